"""Fixtures for the restore tests: vzdump archives built by hand, inspection helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pct.ops.restore import RestoreRequest, restore
from shared.archive.idmap import IdMapEntry
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.storage.api import volume_path
from shared.testbed import build_busybox_rootfs
from tests.pct.restore.vzarchive import archive_name, vzdump_archive

# A privileged Debian-like container with a root file system only.
BASE_CONF = """\
arch: amd64
hostname: backedup
memory: 1024
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:12:34:56,ip=dhcp,type=veth
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=128M
swap: 256
"""


@dataclass
class Backups:
    """Builds trees and vzdump archives in a scratch area next to the test root."""

    root: Path
    work: Path
    logs: list[str] = field(default_factory=list)

    @property
    def dump(self) -> Path:
        path = self.root / "var/lib/vz/dump"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def tree(self, name: str = "rootfs", *, debian: bool = True) -> Path:
        return build_busybox_rootfs(self.work / name, debian_like=debian)

    def archive(
        self,
        conf: str,
        trees: Sequence[tuple[Path, str]] | None = None,
        *,
        vmid: int = 100,
        compress: str = "zst",
        stamp: str = "2024_01_02-03_04_05",
        firewall: str = "",
        idmap: Sequence[IdMapEntry] | None = None,
    ) -> str:
        """A backup in storage ``local``; returns its volume id."""
        if trees is None:
            trees = [(self.tree(f"tree-{stamp}"), "./")]
        name = archive_name(vmid, compress, stamp)
        vzdump_archive(
            self.dump / name, conf, trees, firewall=firewall, idmap=idmap, compress=compress
        )
        return f"local:backup/{name}"

    def path(self, volid: str) -> Path:
        return self.dump / volid.split("/", 1)[1]

    def restore(self, vmid: int, archive: str, **kw: Any) -> Config:
        """``pct restore`` in-process; its console lines go to ``logs``."""
        self.logs.clear()
        request = RestoreRequest(vmid=vmid, archive=archive, **kw)
        return restore(request, log=self.logs.append)


@pytest.fixture
def backups(ctroot: Path) -> Backups:
    work = ctroot.parent / "work"
    work.mkdir(mode=0o755)
    return Backups(ctroot, work)


def volume_of(conf: Config, key: str = "rootfs") -> Path:
    """The file or directory of a mount point's volume."""
    text = conf.get_raw(key)
    assert text is not None, key
    return volume_path(text.split(",")[0])


def images(root: Path, vmid: int) -> list[str]:
    """The volume files of a container on storage ``local``."""
    directory = root / "var/lib/vz/images" / str(vmid)
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def leftovers(root: Path, vmid: int) -> list[str]:
    """What a failed restore of a new container must not leave: config, volumes, mounts."""
    found = [f"config {vmid}"] if store.exists(vmid) else []
    found += [f"image {n}" for n in images(root, vmid)]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(root) in line]
    return found


@pytest.fixture
def mounted_volume() -> Iterator[Callable[[Path], Path]]:
    """Mount raw volume images read-only for inspection; unmounted afterwards."""
    points: list[Path] = []

    def mount(image: Path) -> Path:
        point = Path(tempfile.mkdtemp(prefix="ctkit-inspect-", dir="/var/tmp"))
        points.append(point)
        # mount -o loop can race with other processes for a free loop device (EBUSY): retry
        for attempt in range(5):
            argv = ["mount", "-o", "loop,ro", str(image), str(point)]
            if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
                return point
            time.sleep(0.2 * (attempt + 1))
        subprocess.run(argv, check=True)
        return point

    try:
        yield mount
    finally:
        for point in reversed(points):
            subprocess.run(["umount", "-d", str(point)], check=False)
            shutil.rmtree(point, ignore_errors=True)
