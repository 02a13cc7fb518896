"""Fixtures for the archive tests: directories that a user namespace's root can reach."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def wtmp(ctroot: Path) -> Iterator[Path]:
    """A scratch directory under /var/tmp, traversable by 100000 (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ctkit-archive-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_root(path: Path, idmap: object = None) -> Path:
    """An empty target root, owned by the container's root when id-mapped (as pct does)."""
    path.mkdir(mode=0o755)
    if idmap:
        os.chown(path, 100000, 100000)
    return path
