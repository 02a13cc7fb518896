"""Fixtures for the pveam end-to-end tests: the real console script under a scratch root.

Every command runs ``<venv>/bin/pveam`` in a subprocess with ``CTKIT_ROOT`` set to the test's
root and the proxy variables cleared, against a real HTTP server on 127.0.0.1 and real gpg.
Set-up that is not under test (stored indexes, sources.cfg) goes through the library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from index import sources, store
from index.sources import Source
from shared import paths
from tests.index.conftest import (  # noqa: F401 - fixtures shared with the index tests
    Publisher,
    empty_keyring,
    gpg_keys,
    publisher,
    srv,
    trusted_ring,
)

PVEAM = Path(sys.executable).parent / "pveam"
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


def clean_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env["CTKIT_ROOT"] = str(root)
    env.pop("GNUPGHOME", None)
    env.update(extra or {})
    return env


class Pveam:
    """``pveam(*argv)`` runs the console script and returns its exit code, stdout, stderr."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return clean_env(self.root, extra)

    def __call__(
        self, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Result:
        proc = subprocess.run(
            [str(PVEAM), *argv],
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *argv: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            [str(PVEAM), *argv], env=self.env(), text=True, stdin=subprocess.DEVNULL, **kw
        )


@pytest.fixture
def pveam(ctroot: Path, no_proxy_env: pytest.MonkeyPatch) -> Pveam:
    if not PVEAM.exists():
        pytest.skip(f"console script not installed: {PVEAM}")
    return Pveam(ctroot)


@pytest.fixture
def no_sources(ctroot: Path) -> Path:
    """An empty sources.cfg: no source at all (tests add their own, never the internet)."""
    cfg = paths.sources_cfg()
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("")
    return cfg


def add_source(name: str, url: str, fprs: tuple[str, ...] = ("AB" * 20,), **kw: object) -> Source:
    src = Source(name, url.rstrip("/"), "aplinfo.dat", fprs, **kw)  # type: ignore[arg-type]
    return sources.add_source(src)


def store_index(name: str, text: str | bytes) -> Path:
    """Put an index in the store as a successful update would (readers trust it as it is)."""
    paths.aplinfo_dir().mkdir(parents=True, exist_ok=True)
    path = store.index_path(name)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def template_cache() -> Path:
    """The template directory of storage ``local`` under the scratch root."""
    return paths.under("var/lib/vz/template/cache")


def write_storage_cfg(text: str) -> Path:
    path = paths.storage_cfg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
