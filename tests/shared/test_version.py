"""The version is written once, in ``shared/version.py``: the package build reads it from there,
and what downloads and migrations report is that one value."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from shared.httpclient import USER_AGENT
from shared.version import VERSION


def test_the_installed_package_carries_the_version_of_the_source() -> None:
    assert importlib.metadata.version("ctkit") == VERSION


def test_downloads_name_it_in_their_user_agent() -> None:
    assert f"ctkit/{VERSION}" == USER_AGENT


def test_no_command_looks_the_version_up_in_the_package_metadata() -> None:
    """The look-up scans the installed distributions: it cost every pveam download about
    20 ms for the User-Agent, and the migration handshake the same."""
    code = (
        "import importlib.metadata as meta\n"
        "def refused(*args, **kwargs): raise AssertionError('metadata looked up')\n"
        "meta.version = meta.distribution = meta.metadata = refused\n"
        "import shared.http, shared.httpclient, pct.ops.migrate_target, pct.ops.remote\n"
        "print(shared.httpclient.USER_AGENT)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ctkit/{VERSION}"
