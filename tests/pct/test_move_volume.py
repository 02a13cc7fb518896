"""pct move-volume: to another storage (dir <-> btrfs) keeping the data, to another container,
Proxmox's refusals, and a failed move that leaves the source as it was."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pct.conftest import Pct
from tests.pct.test_clone import mounted, tree_signature

pytestmark = pytest.mark.lxc


def key_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{key}: (.*)$", text, re.M)
    return m.group(1) if m else None


def test_move_between_dir_and_btrfs_keeps_the_data(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    ctroot: Path,
    btrfs_storage: str,
    conf_text: Callable[[int], str],
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1", "--mp0", "local:1,mp=/data")
    with mounted(pct, ctroot, vmid) as root:
        (root / "data/file").write_bytes(b"payload" * 1000)
        before = tree_signature(root)
    old = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    assert key_value(conf_text(vmid), "mp0") == f"{old},mp=/data,size=1G"
    pct("start", vmid)
    res = pct("move-volume", vmid, "mp0", btrfs_storage, check=False)
    assert res.rc != 0 and res.err.strip() == "cannot move volumes of a running container"
    pct("stop", vmid)

    pct("move-volume", vmid, "mp0", btrfs_storage)
    text = conf_text(vmid)
    moved = f"{btrfs_storage}:{vmid}/subvol-{vmid}-disk-0.subvol"
    assert key_value(text, "mp0") == f"{moved},mp=/data,size=1G"
    assert key_value(text, "unused0") == old and "lock:" not in text
    with mounted(pct, ctroot, vmid) as root:
        assert tree_signature(root) == before

    pct("move_volume", vmid, "mp0", "--storage", "local", "--delete")  # the alias, too
    text = conf_text(vmid)
    # btrfs without quotas reports no size: the copy becomes a directory volume, as in Proxmox
    assert key_value(text, "mp0") == f"local:{vmid}/subvol-{vmid}-disk-2.subvol,mp=/data,size=1G"
    assert "unused1" not in text
    assert not (ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol").exists()
    with mounted(pct, ctroot, vmid) as root:
        assert tree_signature(root) == before
    res = pct("move-volume", vmid, "unused0", "local", check=False)
    assert res.rc != 0 and "only configured volumes can be moved" in res.err


def test_reassign_a_volume_to_another_container(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    conf_text: Callable[[int], str],
) -> None:
    src, dst = new_vmid(), new_vmid()
    pct("create", src, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    pct("create", dst, busybox_template, "--rootfs", "local:0", "--mp1", "local:1,mp=/x")
    res = pct("move-volume", src, "rootfs", "--target-vmid", dst, check=False)
    assert res.rc != 0 and res.err.strip() == "Cannot move to/from 'rootfs'"
    res = pct(
        "move-volume", src, "mp0", "--target-vmid", dst, "--target-volume", "mp1", check=False
    )
    assert res.rc != 0
    assert res.err.strip() == f"Target volume key 'mp1' is already in use for container '{dst}'"
    res = pct("move-volume", src, "mp0", "local", "--target-vmid", dst, check=False)
    assert res.rc != 0 and "but not both" in res.err
    pct("start", src)
    res = pct("move-volume", src, "mp0", "--target-vmid", dst, check=False)
    assert res.rc != 0 and "while the source CT is running" in res.err
    pct("stop", src)

    pct("move-volume", src, "mp0", "", dst, "mp2")
    assert key_value(conf_text(src), "mp0") is None
    new = f"local:{dst}/vm-{dst}-disk-2.raw"
    assert key_value(conf_text(dst), "mp2") == f"{new},mp=/data,size=1G"
    assert (ctroot / f"var/lib/vz/images/{dst}/vm-{dst}-disk-2.raw").is_file()
    assert not (ctroot / f"var/lib/vz/images/{src}/vm-{src}-disk-1.raw").exists()
    pct("start", dst)
    assert pct("exec", dst, "--", "ls", "/data").rc == 0
    pct("stop", dst)


@pytest.fixture
def tiny_storage(ctroot: Path, pct: Pct) -> Iterator[str]:
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


def test_failed_move_leaves_the_source_as_it_was(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tiny_storage: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    before = conf.read_text()
    res = pct("move-volume", vmid, "rootfs", tiny_storage, "--delete", check=False)
    assert res.rc != 0
    assert conf.read_text() == before
    assert list((ctroot / "mnt/tiny").rglob("*disk*")) == []
    assert (ctroot / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol/bin").exists()


def test_a_volume_of_another_container_is_never_deleted_or_given_away(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    conf_text: Callable[[int], str],
) -> None:
    owner, user, third = new_vmid(), new_vmid(), new_vmid()
    pct("create", owner, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    pct("create", user, busybox_template, "--rootfs", "local:0")
    pct("create", third, busybox_template, "--rootfs", "local:0")
    volid = f"local:{owner}/vm-{owner}-disk-1.raw"
    with open(ctroot / f"etc/pve/lxc/{user}.conf", "a") as fh:
        fh.write(f"mp0: {volid},mp=/shared\n")
    before = conf_text(user)
    res = pct("move-volume", user, "mp0", "local", "--delete", check=False)
    assert res.rc != 0
    assert f"can't delete volume '{volid}' owned by another container ({owner})" in res.err
    res = pct("move-volume", user, "mp0", "--target-vmid", third, check=False)
    assert res.rc != 0 and "owned by another container" in res.err
    assert conf_text(user) == before
    assert (ctroot / f"var/lib/vz/images/{owner}/vm-{owner}-disk-1.raw").is_file()


def test_a_template_volume_moves_as_a_base_volume(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    ctroot: Path,
    btrfs_storage: str,
    conf_text: Callable[[int], str],
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    pct("template", vmid)
    pct("move-volume", vmid, "rootfs", btrfs_storage, "--delete")
    text = conf_text(vmid)
    assert (
        key_value(text, "rootfs") == f"{btrfs_storage}:{vmid}/subvol-{vmid}-disk-0.subvol,size=1G"
    )
    assert "template: 1" in text and "unused" not in text
    subvol = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    out = subprocess.run(
        ["btrfs", "property", "get", str(subvol), "ro"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ro=true"
    assert not (ctroot / f"var/lib/vz/images/{vmid}/base-{vmid}-disk-0.raw").exists()
