"""Real backups for the backup-inspection tests: a container made by the real ``pct`` holding
one file of every kind, backed up by the real ``vzdump`` to storage ``local``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.vzdump.engine.conftest import CT, Host, host, only_archive, vzdump

__all__ = ["host"]

SPARSE_SIZE = 8 << 20


@dataclass
class Made:
    """A finished backup of ``ct`` with compression ``compress``."""

    host: Host
    ct: CT
    archive: Path
    volid: str

    @property
    def rootfs(self) -> Path:
        return self.ct.volume()


def fill(ct: CT) -> None:
    """One member of each kind under /srv/kinds, plus a file at /srv/last for the early stop."""
    ct.write("srv/kinds/regular.txt", b"hello regular\n" * 100)
    sparse = ct.write("srv/kinds/sparse.img", b"")
    with open(sparse, "r+b") as fh:
        fh.seek(SPARSE_SIZE - 5)
        fh.write(b"tail\n")
        fh.seek(1 << 20)
        fh.write(b"middle")
    base = ct.volume()
    os.symlink("regular.txt", base / "srv/kinds/link")
    os.lchown(base / "srv/kinds/link", *ct.host_ids())
    os.link(base / "srv/kinds/regular.txt", base / "srv/kinds/hard")
    attrs = ct.write("srv/kinds/attrs.txt", b"with xattr and acl\n")
    subprocess.run(["setfattr", "-n", "user.color", "-v", "blue", str(attrs)], check=True)
    subprocess.run(["setfacl", "-m", "u:1234:r", str(attrs)], check=True)
    ct.write("srv/kinds/sub/deep.txt", b"deep\n", uid=33)


def make_backup(host: Host, *, compress: str = "zstd", unprivileged: bool = False) -> Made:
    ct = host.create(unprivileged=unprivileged)
    fill(ct)
    res = vzdump(str(ct.vmid), "--storage", "local", "--compress", compress)
    assert res.rc == 0, res.err
    dump = host.root / "var/lib/vz/dump"
    archive = only_archive(dump, ct.vmid)
    return Made(host, ct, archive, f"local:backup/{archive.name}")


@pytest.fixture
def made(host: Host) -> Iterator[Made]:
    yield make_backup(host)
