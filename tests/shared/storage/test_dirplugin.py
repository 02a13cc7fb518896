"""Container volumes on a directory storage (pct §2.4; pct §9 cases 2, 3, 19, 21, 27, 28)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.errors import CommandError, NotFoundError, StorageError
from shared.storage import volumes
from shared.storage.api import get_storage
from shared.storage.config import load_config

from .conftest import WriteCfg, needs_root

VMID = 900000001
MIB = 1 << 20

pytestmark = needs_root


def images(ctroot: Path, vmid: int = VMID) -> Path:
    return ctroot / f"var/lib/vz/images/{vmid}"


def ext4_root_owner(image: Path) -> tuple[int, int]:
    out = subprocess.run(
        ["debugfs", "-R", "stat /", str(image)], capture_output=True, text=True, check=True
    ).stdout
    fields = out.split()
    return int(fields[fields.index("User:") + 1]), int(fields[fields.index("Group:") + 1])


def test_case_3_raw_volume(ctroot: Path) -> None:
    volid = volumes.alloc_volume("local", VMID, 8 * MIB, root_uid=100000, root_gid=100000)
    assert volid == f"local:{VMID}/vm-{VMID}-disk-0.raw"
    path = images(ctroot) / f"vm-{VMID}-disk-0.raw"
    st = path.stat()
    assert st.st_size == 8 * MIB
    assert st.st_blocks * 512 < st.st_size  # sparse
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert ext4_root_owner(path) == (100000, 100000)
    assert (
        "mmp"
        in subprocess.run(
            ["dumpe2fs", "-h", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert volumes.volume_format(volid) == "raw"
    assert volumes.volume_size(volid) == 8 * MIB


def test_case_2_subvol_owned_by_the_container_root(ctroot: Path) -> None:
    volid = volumes.alloc_volume("local", VMID, 0, root_uid=100000, root_gid=100000)
    assert volid == f"local:{VMID}/subvol-{VMID}-disk-0.subvol"
    st = (images(ctroot) / f"subvol-{VMID}-disk-0.subvol").stat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    assert volumes.volume_format(volid) == "subvol"
    assert volumes.volume_size(volid) == 0
    volumes.resize_volume(volid, 4 << 30)  # only config metadata on a dir storage
    assert volumes.volume_size(volid) == 0


def test_a_subvol_with_a_tree_of_any_depth_is_freed(ctroot: Path) -> None:
    """A container's root can make a chain of 1500 directories: shutil.rmtree raised
    RecursionError, and `pct destroy` left the container locked ('destroyed') for good."""
    from tests.shared.test_safefile import deep_tree

    volid = volumes.alloc_volume("local", VMID, 0)
    vol = images(ctroot) / f"subvol-{VMID}-disk-0.subvol"
    deep_tree(vol / "deep")
    assert volumes.free_volume(volid)
    assert not vol.exists()


def test_first_free_index_over_all_names(ctroot: Path) -> None:
    first = volumes.alloc_volume("local", VMID, 0)
    d = images(ctroot)
    (d / f"vm-{VMID}-disk-1.qcow2").write_bytes(b"")
    (d / f"base-{VMID}-disk-2.raw").write_bytes(b"")
    (d / f"vm-{VMID}-disk-3").mkdir()
    (d / f"vm-{VMID + 1}-disk-4.raw").write_bytes(b"")  # another guest's name: not counted
    assert volumes.alloc_volume("local", VMID, 4 * MIB) == f"local:{VMID}/vm-{VMID}-disk-4.raw"
    assert volumes.free_volume(first)
    assert volumes.alloc_volume("local", VMID, 0) == f"local:{VMID}/subvol-{VMID}-disk-0.subvol"


def test_case_27_list_and_free_unreferenced(ctroot: Path) -> None:
    a = volumes.alloc_volume("local", VMID, 4 * MIB)
    b = volumes.alloc_volume("local", VMID, 0)
    other = volumes.alloc_volume("local", VMID + 1, 0)
    stray = images(ctroot) / f"vm-{VMID}-disk-7.raw"
    stray.write_bytes(b"")
    (images(ctroot) / "notes.txt").write_text("not a volume")
    listed = volumes.list_vmid_volumes("local", VMID)
    assert listed == sorted([a, b, f"local:{VMID}/vm-{VMID}-disk-7.raw"])
    for volid in listed:
        assert volumes.free_volume(volid)
    assert not stray.exists()
    assert sorted(p.name for p in images(ctroot).iterdir()) == ["notes.txt"]
    assert volumes.free_volume(other)
    assert not images(ctroot, VMID + 1).exists()  # the empty owner directory goes too
    assert volumes.free_volume(other) is False  # already gone


def test_list_images_content_follows_the_guest_type(ctroot: Path) -> None:
    volid = volumes.alloc_volume("local", VMID, 0)
    store = load_config().storage("local")
    [entry] = store.list_images(VMID)
    assert (entry.volid, entry.format, entry.size, entry.vmid) == (volid, "subvol", 0, VMID)
    assert entry.content == "images"
    conf = ctroot / f"etc/pve/lxc/{VMID}.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("")
    assert [e.content for e in store.list_images()] == ["rootdir"]


def test_resize_raw(ctroot: Path) -> None:
    volid = volumes.alloc_volume("local", VMID, 8 * MIB)
    volumes.resize_volume(volid, 12 * MIB + 1)
    assert volumes.volume_size(volid) == 12 * MIB + 1024  # whole KiB
    with pytest.raises(StorageError, match=r"^unable to shrink disk size$"):
        volumes.resize_volume(volid, 4 * MIB)
    assert volumes.volume_size(volid) == 12 * MIB + 1024
    # beyond what the file system holds: its own words, in one line
    with pytest.raises(StorageError, match=r"^unable to resize volume .* File too large$"):
        volumes.resize_volume(volid, 9999 << 40)
    assert volumes.volume_size(volid) == 12 * MIB + 1024


def test_allocation_checks(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl,images\n\n"
        "dir: off\n\tpath /o\n\tdisable 1\n"
    )
    with pytest.raises(
        StorageError, match=r"^storage 'local' does not allow content type 'rootdir' \(Container\)$"
    ):
        volumes.alloc_volume("local", VMID, 0)
    with pytest.raises(StorageError, match=r"^storage 'off' is disabled$"):
        volumes.alloc_volume("off", VMID, 0)
    with pytest.raises(NotFoundError, match=r"^storage 'zz' does not exist$"):
        volumes.alloc_volume("zz", VMID, 0)
    write_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent rootdir\n")
    with pytest.raises(StorageError, match=r"^storage does not support subvol quotas$"):
        volumes.alloc_volume("local", VMID, MIB, fmt="subvol")
    with pytest.raises(StorageError, match=r"needs a size"):
        volumes.alloc_volume("local", VMID, 0, fmt="raw")
    with pytest.raises(StorageError, match=r"unsupported format 'qcow2'"):
        volumes.alloc_volume("local", VMID, MIB, fmt="qcow2")


def test_failed_mkfs_leaves_nothing(ctroot: Path) -> None:
    with pytest.raises(CommandError, match=r"mkfs.ext4"):
        volumes.alloc_volume("local", VMID, 1)  # 1 KiB: too small for ext4
    assert not images(ctroot).exists()


def test_storage_without_mkdir_must_exist(write_cfg: WriteCfg) -> None:
    write_cfg("dir: local\n\tpath /nowhere\n\tcontent rootdir\n\tmkdir 0\n")
    with pytest.raises(StorageError, match=r"^unable to activate storage 'local' - directory '"):
        volumes.alloc_volume("local", VMID, 0)


def test_wrong_content_volumes(ctroot: Path) -> None:
    for volid in ["local:vztmpl/a.tar.gz", f"local:backup/vzdump-lxc-{VMID}-x.tar"]:
        with pytest.raises(StorageError, match=r"content type needs to be 'rootdir'"):
            volumes.free_volume(volid)
    with pytest.raises(NotFoundError, match=r"does not exist"):
        volumes.volume_size(f"local:{VMID}/vm-{VMID}-disk-0.raw")


def test_convert_to_base(ctroot: Path) -> None:
    raw = volumes.alloc_volume("local", VMID, 4 * MIB)
    sub = volumes.alloc_volume("local", VMID, 0)
    base = volumes.convert_to_base(raw)
    assert base == f"local:{VMID}/base-{VMID}-disk-0.raw"
    path = images(ctroot) / f"base-{VMID}-disk-0.raw"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert not (images(ctroot) / f"vm-{VMID}-disk-0.raw").exists()
    assert volumes.convert_to_base(sub) == sub  # subvol directories keep their name
    with pytest.raises(StorageError, match=r"create_base not possible with base image"):
        volumes.convert_to_base(base)
    assert volumes.volume_has_feature(base, "clone")
    assert volumes.free_volume(base)


def test_case_28_no_snapshots_on_dir(ctroot: Path) -> None:
    for size in (0, 4 * MIB):
        volid = volumes.alloc_volume("local", VMID, size)
        assert not volumes.volume_has_feature(volid, "snapshot")
        assert volumes.volume_has_feature(volid, "template")
        assert not volumes.needs_fsfreeze(volid)
        assert volumes.list_snapshots(volid) == []
        for call in (
            volumes.snapshot_create,
            volumes.snapshot_rollback,
            volumes.snapshot_delete,
            volumes.snapshot_path,
        ):
            with pytest.raises(StorageError, match=r"^snapshot feature is not available$"):
                call(volid, "s1")


def test_free_refuses_mounted_volumes(ctroot: Path, tmp_path: Path) -> None:
    sub = volumes.alloc_volume("local", VMID, 0)
    raw = volumes.alloc_volume("local", VMID, 8 * MIB)
    target = tmp_path / "mnt"
    target.mkdir()
    for volid in (sub, raw):
        in_use = rf"^volume '{re.escape(volid)}' is in use \((/dev/loop|{re.escape(str(target))})"
        with volumes.mounted_volume(volid, target), pytest.raises(StorageError, match=in_use):
            volumes.free_volume(volid)
        assert volumes.free_volume(volid)
    assert os.listdir(target) == []


def test_a_storage_that_cannot_make_its_directories_says_so_in_one_line(
    ctroot: Path, write_cfg: WriteCfg, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    """A full or read-only storage: the content directories cannot be made. Every command
    that allocated on it (create, set --mpN, restore) ended in a traceback."""
    small = mount_tmpfs(ctroot / "mnt/small", "1m")
    subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True)
    write_cfg("dir: small\n\tpath /mnt/small\n\tcontent rootdir,images\n")
    with pytest.raises(StorageError) as err:
        volumes.alloc_volume("small", VMID, 0, root_uid=0, root_gid=0)
    assert str(err.value) == (
        f"unable to activate storage 'small' - unable to create directory '{small}/images': "
        "Read-only file system"
    )


@pytest.mark.parametrize(
    ("path", "flag"), [("/mnt/usb", "1"), ("/mnt/usb/vz", "/mnt/usb")], ids=["self", "above"]
)
def test_an_unmounted_mountpoint_storage_makes_no_directory(
    write_cfg: WriteCfg, ctroot: Path, path: str, flag: str
) -> None:
    """Checked before anything is made, as Proxmox does: the storage's directory made on the
    root file system where the disk is not mounted would pass for the storage next time."""
    write_cfg(f"dir: usb\n\tpath {path}\n\tcontent rootdir\n\tis_mountpoint {flag}\n")
    message = (
        "^unable to activate storage 'usb' - directory is expected to be a mount point but is "
        f"not mounted: '{ctroot}/mnt/usb'$"
    )
    with pytest.raises(StorageError, match=message):
        volumes.alloc_volume("usb", VMID, 0)
    assert not (ctroot / "mnt").exists()


def test_a_symlinked_owner_directory_or_volume_is_no_volume(ctroot: Path, tmp_path: Path) -> None:
    """ctkit makes no symlink below a storage: ``images/<vmid>`` linked to another container's
    directory listed that container's volumes as this one's (``destroy
    --destroy-unreferenced-disks`` freed them, a rescan adopted them, a start mounted them),
    and a resize grew what a linked volume led to."""
    victim = VMID + 1
    theirs = volumes.alloc_volume("local", victim, 4 * MIB)
    before = (images(ctroot, victim) / f"vm-{victim}-disk-0.raw").read_bytes()
    images(ctroot).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(victim), images(ctroot))
    assert get_storage("local").list_images(VMID) == []
    linked = f"local:{VMID}/vm-{victim}-disk-0.raw"
    with pytest.raises(
        StorageError, match=rf"^volume '{linked}' is behind a symlink \('.*/{VMID}'\)"
    ):
        volumes.mount_volume(linked, tmp_path)
    with pytest.raises(
        StorageError, match=rf"^volume '{linked}' is behind a symlink .* not resized$"
    ):
        volumes.resize_volume(linked, 8 * MIB)
    images(ctroot).unlink()
    images(ctroot).mkdir()
    own = images(ctroot) / f"vm-{VMID}-disk-0.raw"
    os.symlink(f"../{victim}/vm-{victim}-disk-0.raw", own)
    with pytest.raises(StorageError, match=r"is a symlink - not resized$"):
        volumes.resize_volume(f"local:{VMID}/vm-{VMID}-disk-0.raw", 8 * MIB)
    assert (images(ctroot, victim) / f"vm-{victim}-disk-0.raw").read_bytes() == before
    assert get_storage("local").list_images(victim)[0].volid == theirs
