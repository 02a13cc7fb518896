"""pct clone: full clones between dir and btrfs keep content and attributes, linked clones of
templates on btrfs share their extents and start, refusals leave nothing behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


def tree_signature(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry's type, mode, owner, size, content digest, link target and xattrs."""
    sig: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if rel == "lost+found" or rel.startswith("lost+found/"):
                continue
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            xattrs = tuple(
                sorted((k, os.getxattr(path, k, follow_symlinks=False))
                       for k in os.listxattr(path, follow_symlinks=False))
            )  # fmt: skip
            # a directory's size and link count are the file system's business (btrfs: 1)
            isdir = stat.S_ISDIR(st.st_mode)
            size, nlink = (0, 0) if isdir else (st.st_size, st.st_nlink)
            sig[rel] = (st.st_mode, st.st_uid, st.st_gid, size, nlink, extra, xattrs)
    return sig


@contextlib.contextmanager
def mounted(pct: Pct, ctroot: Path, vmid: int) -> Iterator[Path]:
    pct("mount", vmid)
    try:
        yield ctroot / f"var/lib/lxc/{vmid}/rootfs"
    finally:
        pct("unmount", vmid)


def decorate(root: Path) -> None:
    """Files that a careless copy gets wrong: xattrs, hard links, holes, modes, odd owners."""
    data = root / "srv"
    data.mkdir(exist_ok=True)
    (data / "a").write_text("hello\n")
    os.link(data / "a", data / "a-link")
    os.setxattr(data / "a", "user.note", b"kept")
    with open(data / "sparse", "wb") as fh:
        fh.seek(8 << 20)
        fh.write(b"end")
    os.chmod(data / "sparse", 0o4751)
    os.chown(data / "sparse", 101234, 101235)
    os.symlink("a", data / "sym")


def test_full_clone_dir_to_btrfs_and_back_is_identical(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    btrfs_storage: str,
    conf_text: Callable[[int], str],
) -> None:
    src, mid, back = new_vmid(), new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", "local:1", "--net0", "name=eth0,bridge=none0")
    with mounted(pct, ctroot, src) as root:
        decorate(root)
        original = tree_signature(root)
    res = pct("clone", src, mid, "--full", "--storage", btrfs_storage, "--hostname", "mid")
    pct.vmids.add(mid)
    assert f"create full clone of mountpoint rootfs (local:{src}/vm-{src}-disk-0.raw)" in res.out
    text = conf_text(mid)
    assert re.search(rf"rootfs: {btrfs_storage}:{mid}/subvol-{mid}-disk-0.subvol,size=1G", text)
    assert "hostname: mid\n" in text and "lock:" not in text
    mac = lambda t: re.search(r"hwaddr=([0-9A-F:]+)", t).group(1)  # noqa: E731
    assert mac(text) != mac(conf_text(src))
    pct("clone", mid, back, "--full", "--storage", "local")
    pct.vmids.add(back)
    for vmid in (mid, back):
        with mounted(pct, ctroot, vmid) as root:
            assert tree_signature(root) == original
    assert (ctroot / f"var/lib/vz/images/{back}").is_dir()
    assert "lock:" not in conf_text(src)


def test_linked_clone_of_a_template_shares_extents_and_starts(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    btrfs_storage: str,
    conf_text: Callable[[int], str],
) -> None:
    base, linked = new_vmid(), new_vmid()
    pct("create", base, busybox_template, "--rootfs", f"{btrfs_storage}:0")
    with mounted(pct, ctroot, base) as root:
        (root / "big").write_bytes(os.urandom(4 << 20))
    res = pct("clone", base, linked, "--full", "0", check=False)
    assert res.rc != 0
    assert "Linked clone feature for " in res.err and "is not available" in res.err
    assert not (ctroot / f"etc/pve/lxc/{linked}.conf").exists()
    pct("template", base)
    res = pct("clone", base, linked, "--storage", btrfs_storage, check=False)
    assert res.rc != 0 and "parameter 'storage' not allowed for linked clones" in res.err
    pct("clone", base, linked, "--hostname", "linked")
    pct.vmids.add(linked)
    text = conf_text(linked)
    volname = f"{base}/subvol-{base}-disk-0.subvol/{linked}/subvol-{linked}-disk-0.subvol"
    assert f"rootfs: {btrfs_storage}:{volname}" in text
    assert "template" not in text
    subvol = ctroot / f"mnt/bt/images/{linked}/subvol-{linked}-disk-0.subvol"
    out = subprocess.run(
        ["btrfs", "filesystem", "du", "-s", "--raw", str(subvol)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1].split()  # fmt: skip
    total, exclusive, shared = int(out[0]), int(out[1]), int(out[2])
    assert total > 4 << 20 and shared >= 4 << 20 and exclusive < total // 10
    pct("start", linked)
    assert pct("exec", linked, "--", "hostname").out.strip() == "linked"
    pct("stop", linked)


def test_clone_refusals(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    src, other = new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", "local:0")
    pct("create", other, busybox_template, "--rootfs", "local:0")
    res = pct("clone", src, other, check=False)
    assert res.rc != 0 and f"CT {other} already exists on node" in res.err
    newid = new_vmid()
    res = pct("clone", src, newid, "--target", "elsewhere", check=False)
    assert res.rc != 0 and "no such cluster node 'elsewhere'" in res.err
    pct("start", src)
    res = pct("clone", src, newid, check=False)
    assert res.rc != 0
    assert "Full clone of a running container is only possible from a snapshot" in res.err
    pct("stop", src)
    with open(ctroot / f"etc/pve/lxc/{src}.conf", "a") as fh:
        fh.write("mp0: /tmp,mp=/mnt/host\n")
    res = pct("clone", src, newid, check=False)
    assert res.rc != 0 and "unable to clone mountpoint 'mp0' (type bind)" in res.err
    assert not (ctroot / f"etc/pve/lxc/{newid}.conf").exists()
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{src}.conf").read_text()


@pytest.fixture
def tiny_storage(ctroot: Path, pct: Pct) -> Iterator[str]:
    """Dir storage ``tiny`` on a 256 KiB tmpfs: any real copy runs out of space."""
    mnt = ctroot / "mnt/tiny"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tiny", str(mnt)], check=True)
    cfg = ctroot / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
        "dir: tiny\n\tpath /mnt/tiny\n\tcontent rootdir\n"
    )
    try:
        yield "tiny"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_failed_clone_leaves_no_config_and_no_volume(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path, tiny_storage: str
) -> None:
    src, newid = new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", "local:0")
    res = pct("clone", src, newid, "--storage", tiny_storage, check=False)
    assert res.rc != 0 and res.err.startswith("clone failed: ")
    assert not (ctroot / f"etc/pve/lxc/{newid}.conf").exists()
    assert list((ctroot / "mnt/tiny").rglob("*disk*")) == []
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{src}.conf").read_text()


def test_a_clone_killed_half_way_leaves_nothing(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    src, newid = new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", "local:0")
    with mounted(pct, ctroot, src) as root:
        (root / "big").write_bytes(os.urandom(16 << 20))
    from tests.pct.conftest import PCT

    proc = subprocess.Popen(
        [str(PCT), "clone", str(src), str(newid), "--bwlimit", "1024"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pct.vmids.add(newid)
    deadline = time.monotonic() + 30
    while not list((ctroot / f"var/lib/vz/images/{newid}").glob("*")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1)  # rsync is copying now
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted by signal")
    assert not (ctroot / f"etc/pve/lxc/{newid}.conf").exists()
    assert list((ctroot / f"var/lib/vz/images/{newid}").glob("*")) == []
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{src}.conf").read_text()


def test_full_clone_of_a_running_container_from_a_snapshot(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    btrfs_storage: str,
    conf_text: Callable[[int], str],
) -> None:
    src, newid = new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", f"{btrfs_storage}:0", "--memory", "256")
    with mounted(pct, ctroot, src) as root:
        (root / "marker").write_text("before\n")
        os.chown(root / "marker", 100000, 100000)  # the CT's root may rewrite it
    pct("snapshot", src, "s1")
    pct("set", src, "--memory", "300")
    pct("start", src)
    pct("exec", src, "--", "sh", "-c", "echo after > /marker")
    res = pct("clone", src, newid, "--full", "--snapname", "s1", "--storage", "local", check=False)
    pct.vmids.add(newid)
    assert res.rc == 0, res.text
    assert lxcapi.is_running(src)
    text = conf_text(newid)
    assert "memory: 256\n" in text  # the snapshot's values, not the current ones
    assert "parent" not in text and "snaptime" not in text and "[s1]" not in text
    assert f"rootfs: local:{newid}/subvol-{newid}-disk-0.subvol" in text
    marker = ctroot / f"var/lib/vz/images/{newid}/subvol-{newid}-disk-0.subvol/marker"
    assert marker.read_text() == "before\n"
    pct("stop", src)
