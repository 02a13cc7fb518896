"""Id-mapped bind mounts (``mpN: ...,idmap=``) in unprivileged CTs, at start and hot-plugged."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


def _shared(tmp_path: Path) -> Path:
    """A host directory with files owned by host ids 0 and 1000."""
    top = tmp_path / "shared"
    top.mkdir(mode=0o777)
    os.chmod(top, 0o777)
    for name, owner in (("root-file", 0), ("user-file", 1000)):
        (top / name).write_text(name)
        os.chown(top / name, owner, owner)
    return top


def _owners(pct: Pct, vmid: int, where: str) -> str:
    out = pct("exec", vmid, "--", "stat", "-c", "%n %u:%g", f"{where}/root-file",
              f"{where}/user-file").out  # fmt: skip
    return out.replace(f"{where}/", "")


def test_idmapped_bind_mounts(pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path) -> None:
    top = _shared(tmp_path)
    pct("create", vmid, busybox_template, "--rootfs", "local:0",
        "--mp0", f"{top},mp=/plain", "--mp1", f"{top},mp=/pass,idmap=passthrough",
        "--mp2", f"{top},mp=/one,idmap=u:1000:1000:1;g:1000:1000:1")  # fmt: skip
    pct("start", vmid)
    # without idmap the host's ids are unmapped in the container: nobody
    assert _owners(pct, vmid, "/plain") == "root-file 65534:65534\nuser-file 65534:65534\n"
    # passthrough: the ids on disk are the ids inside
    assert _owners(pct, vmid, "/pass") == "root-file 0:0\nuser-file 1000:1000\n"
    # one id taken from the disk, the others as the container's map
    assert _owners(pct, vmid, "/one") == "root-file 65534:65534\nuser-file 1000:1000\n"
    # what the container's root writes lands as host id 0 through passthrough
    pct("exec", vmid, "--", "touch", "/pass/new")
    assert (top / "new").stat().st_uid == 0
    # hot-plugged the same way
    pct("set", vmid, "--mp3", f"{top},mp=/hot,idmap=passthrough")
    assert _owners(pct, vmid, "/hot") == "root-file 0:0\nuser-file 1000:1000\n"
    # a file system without id-mapped mounts (ramfs): refused, pending, nothing mounted
    with _ramfs(tmp_path / "ram") as ram:
        res = pct("set", vmid, "--mp4", f"{ram},mp=/ram,idmap=passthrough", check=False)
        assert res.rc != 0
        assert "unable to hotplug mp4: the file system does not support id-mapped mounts" in res.err
        assert "new mp4: " in pct("pending", vmid).out
        assert " /ram " not in pct("exec", vmid, "--", "cat", "/proc/mounts").out
    pct("stop", vmid)


@contextlib.contextmanager
def _ramfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_idmap_on_a_privileged_ct_is_ignored_with_a_warning(
    pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path
) -> None:
    top = _shared(tmp_path)
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", "0")
    pct("start", vmid)
    res = pct("set", vmid, "--mp0", f"{top},mp=/pass,idmap=passthrough")
    assert "'mp0' - ignoring 'idmap' option unsupported by privileged container" in res.err
    assert _owners(pct, vmid, "/pass") == "root-file 0:0\nuser-file 1000:1000\n"
    pct("stop", vmid)
