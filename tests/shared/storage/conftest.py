"""Fixtures for the storage tests: storage.cfg writers, a btrfs on a loop device, mount cleanup."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.testbed import loops_below, mounts_below

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, loop devices)")

WriteCfg = Callable[[str], Path]


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def release_everything_below(top: Path) -> None:
    """Unmount (lazily, innermost first) and detach whatever a test left below ``top``."""
    for mp in reversed(mounts_below(top)):
        if _sh("umount", str(mp)).returncode != 0:
            _sh("umount", "-l", str(mp))
    for dev in loops_below(top):
        _sh("losetup", "-d", dev)


@pytest.fixture(autouse=True)
def _no_leaks(tmp_path: Path) -> Iterator[None]:
    """Every storage test releases its mounts and loop devices, even when it fails."""
    yield
    release_everything_below(tmp_path)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """An empty directory to mount on."""
    path = tmp_path / "target"
    path.mkdir()
    return path


@pytest.fixture
def write_cfg(ctroot: Path) -> WriteCfg:
    """Write ``etc/pve/storage.cfg`` under the scratch root."""

    def write(text: str) -> Path:
        path = ctroot / "etc/pve/storage.cfg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def btrfs_mount(ctroot: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh btrfs (16 GiB sparse image on a loop device) mounted at ``<root>/mnt/btrfs``."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, loop devices)")
    image = tmp_path / "btrfs.img"
    with open(image, "wb") as fh:
        fh.truncate(16 << 30)  # sparse; room for default-sized volumes
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt = ctroot / "mnt/btrfs"
    mnt.mkdir(parents=True)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        with contextlib.suppress(Exception):
            release_everything_below(mnt)
        _sh("losetup", "-d", dev)


@pytest.fixture
def btrfs_cfg(write_cfg: WriteCfg, btrfs_mount: Path) -> Path:
    """storage.cfg with ``local`` (dir) and ``bt`` (btrfs on the loop device)."""
    write_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
        "btrfs: bt\n\tpath /mnt/btrfs\n\tcontent rootdir,images\n"
    )
    return btrfs_mount
