"""btrfs storage on a real btrfs (loop device): layout, quotas, snapshots (pct §5, case 28)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.errors import NotFoundError, StorageError
from shared.storage import volumes
from shared.storage.btrfsplugin import (
    BtrfsStorage,
    create_subvolume,
    delete_subvolume,
    fs_uuid,
    is_subvolume,
    snapshot_subvolume,
)
from shared.storage.config import load_config

from .conftest import WriteCfg

VMID = 900000002
MIB = 1 << 20


def images(mnt: Path, vmid: int = VMID) -> Path:
    return mnt / f"images/{vmid}"


def ro_property(path: Path) -> str:
    out = subprocess.run(
        ["btrfs", "property", "get", str(path), "ro"], capture_output=True, text=True, check=True
    ).stdout
    return out.strip()


def test_subvolume_allocation(btrfs_cfg: Path) -> None:
    volid = volumes.alloc_volume("bt", VMID, 0, root_uid=100000, root_gid=100000)
    assert volid == f"bt:{VMID}/subvol-{VMID}-disk-0.subvol"
    path = images(btrfs_cfg) / f"subvol-{VMID}-disk-0.subvol"
    assert is_subvolume(path)
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    # a size without quotas is ignored: still a subvolume, size reported as 0
    sized = volumes.alloc_volume("bt", VMID, 8 << 30)
    assert sized == f"bt:{VMID}/subvol-{VMID}-disk-1.subvol"
    assert volumes.volume_size(sized) == 0 and volumes.volume_format(sized) == "subvol"
    assert volumes.volume_has_feature(volid, "snapshot")
    assert not volumes.needs_fsfreeze(volid)


def test_quota_limit_when_quotas_are_enabled(btrfs_cfg: Path) -> None:
    subprocess.run(["btrfs", "quota", "enable", str(btrfs_cfg)], check=True)
    volid = volumes.alloc_volume("bt", VMID, 64 * MIB)
    assert volumes.volume_size(volid) == 64 * MIB
    volumes.resize_volume(volid, 128 * MIB)
    assert volumes.volume_size(volid) == 128 * MIB
    unsized = volumes.alloc_volume("bt", VMID, 0)
    assert volumes.volume_size(unsized) == 0


def test_file_system_uuid_and_quota_state_as_btrfs_progs_report_them(
    btrfs_cfg: Path,
) -> None:
    shown = subprocess.run(
        ["btrfs", "filesystem", "show", str(btrfs_cfg)], capture_output=True, text=True, check=True
    ).stdout
    assert fs_uuid(btrfs_cfg) is not None and f"uuid: {fs_uuid(btrfs_cfg)}" in shown
    assert fs_uuid(Path("/proc")) is None
    store = load_config().get("bt")
    assert isinstance(store, BtrfsStorage)
    for action, enabled in (("enable", True), ("disable", False), ("enable", True)):
        subprocess.run(["btrfs", "quota", action, str(btrfs_cfg)], check=True)
        assert store.quotas_enabled() is enabled
        listed = subprocess.run(["btrfs", "qgroup", "show", str(btrfs_cfg)], capture_output=True)
        assert (listed.returncode == 0) is enabled  # what the check stands in for


def test_raw_image_inside_a_subvolume(btrfs_cfg: Path) -> None:
    volid = volumes.alloc_volume("bt", VMID, 16 * MIB, root_uid=100000, root_gid=100000, fmt="raw")
    assert volid == f"bt:{VMID}/vm-{VMID}-disk-0.raw"
    subvol = images(btrfs_cfg) / f"vm-{VMID}-disk-0"
    assert is_subvolume(subvol)
    assert (subvol / "disk.raw").stat().st_size == 16 * MIB
    assert volumes.volume_size(volid) == 16 * MIB
    assert volumes.volume_format(volid) == "raw"
    assert volumes.needs_fsfreeze(volid)
    with pytest.raises(StorageError, match=r"needs a size"):
        volumes.alloc_volume("bt", VMID, 0, fmt="raw")
    store = load_config().storage("bt")
    assert [(e.volid, e.format, e.size) for e in store.list_images(VMID)] == [
        (volid, "raw", 16 * MIB)
    ]


def test_listing_and_index_skip_snapshots(btrfs_cfg: Path) -> None:
    sub = volumes.alloc_volume("bt", VMID, 0)
    volumes.snapshot_create(sub, "s1")
    raw = volumes.alloc_volume("bt", VMID, 8 * MIB, fmt="raw")
    assert raw == f"bt:{VMID}/vm-{VMID}-disk-1.raw"
    assert volumes.list_vmid_volumes("bt", VMID) == [sub, raw]
    # a leftover snapshot still blocks its disk index
    subprocess.run(
        [
            "btrfs",
            "-q",
            "subvolume",
            "delete",
            str(images(btrfs_cfg) / f"subvol-{VMID}-disk-0.subvol"),
        ],
        check=True,
    )
    assert volumes.list_vmid_volumes("bt", VMID) == [raw]
    assert volumes.alloc_volume("bt", VMID, 0) == f"bt:{VMID}/subvol-{VMID}-disk-2.subvol"


def test_subvolume_snapshots(btrfs_cfg: Path) -> None:
    volid = volumes.alloc_volume("bt", VMID, 0)
    data = images(btrfs_cfg) / f"subvol-{VMID}-disk-0.subvol"
    (data / "file").write_text("v1")
    volumes.snapshot_create(volid, "s1")
    snap = volumes.snapshot_path(volid, "s1")
    assert snap == images(btrfs_cfg) / f"subvol-{VMID}-disk-0.subvol@s1"
    assert is_subvolume(snap) and ro_property(snap) == "ro=true"
    (data / "file").write_text("v2")
    (data / "new").write_text("x")
    volumes.snapshot_create(volid, "s2")
    assert volumes.list_snapshots(volid) == ["s1", "s2"]
    with pytest.raises(StorageError, match=r"snapshot 's1' .* already exists"):
        volumes.snapshot_create(volid, "s1")
    volumes.snapshot_rollback(volid, "s1")
    assert (data / "file").read_text() == "v1" and not (data / "new").exists()
    assert is_subvolume(data) and ro_property(data) == "ro=false"
    assert volumes.list_snapshots(volid) == ["s1", "s2"]
    assert [p.name for p in images(btrfs_cfg).iterdir() if ".tmp." in p.name] == []
    volumes.snapshot_delete(volid, "s1")
    assert volumes.list_snapshots(volid) == ["s2"]
    with pytest.raises(NotFoundError, match=r"snapshot 's1' of volume .* does not exist"):
        volumes.snapshot_rollback(volid, "s1")
    with pytest.raises(NotFoundError):
        volumes.snapshot_delete(volid, "s1")
    for bad in ["a/b", "x", "../s2", "s@1"]:
        with pytest.raises(StorageError, match=r"invalid snapshot name"):
            volumes.snapshot_create(volid, bad)


def test_read_only_snapshot_takes_only_a_subvolume(btrfs_cfg: Path) -> None:
    """The snapshot ioctl is given a subvolume only, opened without following a symlink; what
    is refused says why in one line and creates nothing."""
    subvol = images(btrfs_cfg)
    volumes.alloc_volume("bt", VMID, 0)
    data = subvol / f"subvol-{VMID}-disk-0.subvol"
    (data / "file").write_text("v1")
    snapshot_subvolume(data, subvol / "copy", readonly=True)
    assert is_subvolume(subvol / "copy") and ro_property(subvol / "copy") == "ro=true"
    assert (subvol / "copy/file").read_text() == "v1"
    with pytest.raises(StorageError, match=r"cannot snapshot .* as .* - File exists"):
        snapshot_subvolume(data, subvol / "copy", readonly=True)
    (data / "plain").mkdir()
    (subvol / "link").symlink_to(data)
    for source, why in ((data / "plain", "not a subvolume"), (subvol / "link", "Not a directory"),
                        (subvol / "absent", "No such file or directory")):  # fmt: skip
        with pytest.raises(StorageError, match=rf"cannot snapshot '{source}' - {why}"):
            snapshot_subvolume(source, subvol / "other", readonly=True)
        assert not (subvol / "other").exists()
    with pytest.raises(StorageError, match=r"invalid snapshot name"):
        snapshot_subvolume(data, subvol / ("x" * 4040), readonly=True)


def test_subvolumes_made_and_deleted_as_btrfs_progs_does(btrfs_cfg: Path) -> None:
    """The ioctls of ``btrfs subvolume create``/``delete``, checked with the tool itself; a
    delete takes the entry named, never what a symlink there points to."""
    made = btrfs_cfg / "made"
    create_subvolume(made)
    listed = subprocess.run(["btrfs", "subvolume", "list", "-o", str(btrfs_cfg)],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert is_subvolume(made) and listed.rstrip().endswith(" path made")
    with pytest.raises(StorageError, match=rf"^unable to create subvolume '{made}' - File exists$"):
        create_subvolume(made)
    (made / "data").write_text("kept")
    (btrfs_cfg / "link").symlink_to(made)
    (btrfs_cfg / "plain").mkdir()
    for path in (btrfs_cfg / "link", btrfs_cfg / "plain"):
        with pytest.raises(StorageError, match=rf"^unable to delete subvolume '{path}' - "):
            delete_subvolume(path)
    with pytest.raises(StorageError, match=r"No such file or directory$"):
        delete_subvolume(btrfs_cfg / "absent")
    assert (made / "data").read_text() == "kept"
    snapshot_subvolume(made, btrfs_cfg / "copy")
    (btrfs_cfg / "copy/data").write_text("writable")
    delete_subvolume(made)
    assert not made.exists() and (btrfs_cfg / "copy/data").read_text() == "writable"
    with pytest.raises(StorageError, match=r"^invalid subvolume name '\.\.'$"):
        create_subvolume(btrfs_cfg / "..")


def test_rollback_keeps_the_quota_limit(btrfs_cfg: Path) -> None:
    subprocess.run(["btrfs", "quota", "enable", str(btrfs_cfg)], check=True)
    volid = volumes.alloc_volume("bt", VMID, 32 * MIB)
    volumes.snapshot_create(volid, "s1")
    volumes.snapshot_rollback(volid, "s1")
    assert volumes.volume_size(volid) == 32 * MIB


def test_rollback_takes_the_snapshots_size_back(btrfs_cfg: Path) -> None:
    """Grown after the snapshot, the volume kept its larger limit through a rollback while the
    config named the snapshot's size: a resize to 1.5 times that was refused as a shrink."""
    subprocess.run(["btrfs", "quota", "enable", str(btrfs_cfg)], check=True)
    volid = volumes.alloc_volume("bt", VMID, 32 * MIB)
    volumes.snapshot_create(volid, "s1")
    volumes.resize_volume(volid, 64 * MIB)
    volumes.snapshot_rollback(volid, "s1", size=32 * MIB)
    assert volumes.volume_size(volid) == 32 * MIB


def test_raw_snapshots_mount_read_only(btrfs_cfg: Path, tmp_path: Path) -> None:
    volid = volumes.alloc_volume("bt", VMID, 16 * MIB, fmt="raw")
    target = tmp_path / "mnt"
    target.mkdir()
    with volumes.mounted_volume(volid, target):
        (target / "file").write_text("v1")
    volumes.snapshot_create(volid, "vzdump")
    assert volumes.snapshot_path(volid, "vzdump") == (
        images(btrfs_cfg) / f"vm-{VMID}-disk-0@vzdump/disk.raw"
    )
    with volumes.mounted_volume(volid, target):
        (target / "file").write_text("v2")
    with volumes.mounted_volume(volid, target, snapshot="vzdump") as handle:
        assert (target / "file").read_text() == "v1"
        assert handle.format == "raw" and handle.loopdev
        with pytest.raises(OSError):
            (target / "other").write_text("x")
    volumes.snapshot_rollback(volid, "vzdump")
    with volumes.mounted_volume(volid, target, read_only=True):
        assert (target / "file").read_text() == "v1"
    volumes.snapshot_delete(volid, "vzdump")
    assert volumes.list_snapshots(volid) == []


def test_free_deletes_snapshots_too(btrfs_cfg: Path) -> None:
    raw = volumes.alloc_volume("bt", VMID, 8 * MIB, fmt="raw")
    sub = volumes.alloc_volume("bt", VMID, 0)
    for volid in (raw, sub):
        volumes.snapshot_create(volid, "s1")
        volumes.snapshot_create(volid, "s2")
    assert volumes.free_volume(raw)
    assert sorted(p.name for p in images(btrfs_cfg).iterdir()) == [
        f"subvol-{VMID}-disk-1.subvol",
        f"subvol-{VMID}-disk-1.subvol@s1",
        f"subvol-{VMID}-disk-1.subvol@s2",
    ]
    assert volumes.free_volume(sub)
    assert not images(btrfs_cfg).exists()
    assert volumes.free_volume(sub) is False


def test_mounted_volumes_and_snapshots_are_not_deleted(btrfs_cfg: Path, tmp_path: Path) -> None:
    volid = volumes.alloc_volume("bt", VMID, 0)
    volumes.snapshot_create(volid, "s1")
    target = tmp_path / "mnt"
    target.mkdir()
    with volumes.mounted_volume(volid, target, snapshot="s1"):
        with pytest.raises(StorageError, match=r"is in use"):
            volumes.snapshot_delete(volid, "s1")
        with pytest.raises(StorageError, match=r"is in use"):
            volumes.free_volume(volid)
    with volumes.mounted_volume(volid, target):
        with pytest.raises(StorageError, match=r"is in use"):
            volumes.free_volume(volid)
        with pytest.raises(StorageError, match=r"is in use"):
            volumes.snapshot_rollback(volid, "s1")
    assert volumes.free_volume(volid)


def test_convert_to_base(btrfs_cfg: Path) -> None:
    raw = volumes.alloc_volume("bt", VMID, 8 * MIB, fmt="raw")
    sub = volumes.alloc_volume("bt", VMID, 0)
    base = volumes.convert_to_base(raw)
    assert base == f"bt:{VMID}/base-{VMID}-disk-0.raw"
    assert ro_property(images(btrfs_cfg) / f"base-{VMID}-disk-0") == "ro=true"
    assert volumes.volume_size(base) == 8 * MIB
    assert volumes.convert_to_base(sub) == sub
    assert ro_property(images(btrfs_cfg) / f"subvol-{VMID}-disk-1.subvol") == "ro=true"
    with pytest.raises(StorageError, match=r"create_base not possible with base image"):
        volumes.convert_to_base(base)
    assert volumes.volume_has_feature(base, "clone")
    assert volumes.free_volume(base) and volumes.free_volume(sub)


def test_btrfs_storage_on_another_file_system(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg("btrfs: nb\n\tpath /srv/notbtrfs\n\tcontent rootdir\n")
    with pytest.raises(StorageError, match=r"/srv/notbtrfs' is not a btrfs file system$"):
        volumes.alloc_volume("nb", VMID, 0)


@pytest.mark.parametrize("fmt", ["subvol", "raw"])
def test_a_symlink_in_a_volumes_place_is_removed_not_what_it_points_to(
    btrfs_cfg: Path, fmt: str
) -> None:
    """``btrfs subvolume delete`` resolves its path: freeing a volume whose subvolume had been
    replaced by a link to another container's subvolume deleted that one, data and all."""
    other = volumes.alloc_volume("bt", VMID + 1, 0)
    kept = images(btrfs_cfg, VMID + 1) / f"subvol-{VMID + 1}-disk-0.subvol"
    (kept / "data").write_text("the other container's")
    volid = volumes.alloc_volume("bt", VMID, 8 * MIB if fmt == "raw" else 0, fmt=fmt)
    name = volid.split("/", 1)[1]
    place = images(btrfs_cfg) / (name.removesuffix(".raw") if fmt == "raw" else name)
    assert is_subvolume(place)
    subprocess.run(["btrfs", "-q", "subvolume", "delete", str(place)], check=True)
    place.symlink_to(kept)
    assert volumes.free_volume(volid)
    assert not place.is_symlink() and not place.exists()
    assert (kept / "data").read_text() == "the other container's"
    assert is_subvolume(kept) and volumes.list_vmid_volumes("bt", VMID + 1) == [other]


def test_subvolumes_a_guest_made_inside_its_volume_go_with_it(btrfs_cfg: Path) -> None:
    """Any process in a container may make a subvolume in its root (docker's btrfs driver
    does): the rollback's delete of the old state failed ("Directory not empty") after the
    swap, and a destroy failed on the volume after deleting its snapshots, both for good."""
    volid = volumes.alloc_volume("bt", VMID, 0)
    root = images(btrfs_cfg) / f"subvol-{VMID}-disk-0.subvol"
    (root / "kept").write_text("in the snapshot\n")
    volumes.snapshot_create(volid, "s1")
    for tree in (root / "var/lib/docker", root / "srv"):
        tree.parent.mkdir(parents=True, exist_ok=True)
        create_subvolume(tree)
        create_subvolume(tree / "deeper")  # a subvolume in a subvolume
        (tree / "deeper/data").write_text("x")
    volumes.snapshot_rollback(volid, "s1")
    assert sorted(p.name for p in root.iterdir()) == ["kept"]
    assert sorted(p.name for p in images(btrfs_cfg).iterdir()) == [
        f"subvol-{VMID}-disk-0.subvol",
        f"subvol-{VMID}-disk-0.subvol@s1",
    ]
    create_subvolume(root / "nested")
    stale = root.with_name(f"{root.name}.tmp.1")  # the old state a killed rollback left
    snapshot_subvolume(root, stale)
    create_subvolume(stale / "again")
    assert volumes.free_volume(volid)
    assert not images(btrfs_cfg).exists()
