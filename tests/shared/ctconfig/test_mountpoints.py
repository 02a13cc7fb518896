"""Mount-point helpers: classification, new-volume syntax, ownership, unused volumes, MACs."""

from __future__ import annotations

import os
import re
import tempfile

import pytest

from shared.ctconfig.mountpoints import (
    MountPoint,
    add_unused_volume,
    check_device_node,
    classify,
    iter_mountpoints,
    mountpoint_keys,
    named_volume,
    new_volume_size,
    parse_mountpoint,
    parse_new_volume,
    random_mac,
    unparsable_mountpoints,
    unused_keys,
    used_volumes,
    volume_owner,
)
from shared.formats.propstring import PropertyStringError
from shared.formats.types import FormatError


def test_classify() -> None:
    assert classify("local:100/vm-100-disk-0.raw") == "volume"
    assert classify("local:4") == "volume"
    assert classify("/srv/data") == "bind"
    assert classify("/dev/sdb1") == "device"
    assert classify("/devices") == "bind"


def test_new_volume_syntax() -> None:
    assert parse_new_volume("local:10") == ("local", 10.0)
    assert parse_new_volume("local-lvm:0.5") == ("local-lvm", 0.5)
    assert parse_new_volume("8") == (None, 8.0)
    assert parse_new_volume("local:100/vm-100-disk-0.raw") is None
    assert parse_new_volume("local:1G") is None
    assert new_volume_size(10) == 10 << 30
    assert new_volume_size(0.5) == 512 << 20
    assert new_volume_size(0) == 0


def test_parse_and_render_mountpoints() -> None:
    root = parse_mountpoint("rootfs", "local:100/vm-100-disk-0.raw,size=4G,ro=1")
    assert (root.key, root.path, root.type, root.size, root.ro) == (
        "rootfs",
        "/",
        "volume",
        4 << 30,
        True,
    )
    assert root.render() == "local:100/vm-100-disk-0.raw,ro=1,size=4G"
    assert root.backup_enabled() == (True, "rootfs")
    mp = parse_mountpoint("mp4", "local:3,mp=/srv,backup=1")
    assert parse_new_volume(mp.volume) is not None and mp.backup_enabled() == (True, "enabled")
    assert mp.replace(volume="local:100/vm-100-disk-1.raw", size=3 << 30).render() == (
        "local:100/vm-100-disk-1.raw,mp=/srv,backup=1,size=3G"
    )
    assert mp.replace(backup=None).render() == "local:3,mp=/srv"
    bind = parse_mountpoint("mp0", "/host,mp=/ct,backup=1")
    assert bind.backup_enabled() == (False, "not a volume")
    assert bind.type == "bind"
    assert parse_mountpoint("mp1", "local:1,mp=/x").backup_enabled() == (False, "disabled")
    with pytest.raises(FormatError):
        parse_mountpoint("unused0", "local:1")


def test_iteration_order_and_skipping() -> None:
    values = {
        "mp10": "local:1,mp=/ten",
        "mp2": "local:1,mp=/two",
        "rootfs": "local:4",
        "mp3": "broken",
        "net0": "name=eth0",
    }
    assert [mp.key for mp in iter_mountpoints(values)] == ["rootfs", "mp2", "mp10"]
    assert mountpoint_keys()[:3] == ["rootfs", "mp0", "mp1"] and len(mountpoint_keys()) == 257
    # keys beyond the 256 mount points a config can hold are no mount points (a file may still
    # carry one: it was kept, with a warning, when read)
    values |= {"mp256": "local:1,mp=/no", "mp01": "local:1,mp=/no", "mpx": "local:1,mp=/no"}
    assert [mp.key for mp in iter_mountpoints(values)] == ["rootfs", "mp2", "mp10"]
    # a caller may drop entries of the section while it walks them
    walked = []
    for mp in iter_mountpoints(values):
        walked.append(mp.key)
        values.pop("mp10", None)
    assert walked == ["rootfs", "mp2"]


def test_the_volume_of_a_line_that_does_not_parse_is_still_known() -> None:
    assert named_volume("local:100/vm-100-disk-1.raw,mp=/srv,newopt=1") == (
        "local:100/vm-100-disk-1.raw"
    )
    assert named_volume("mp=/srv,newopt=1,volume=bt:100/subvol-100-disk-2.subvol") == (
        "bt:100/subvol-100-disk-2.subvol"
    )
    assert named_volume("/srv/data,mp=/srv,newopt=1") is None  # a bind mount names no volume
    assert named_volume("mp=/srv,newopt=1") is None
    values = {
        "rootfs": "local:100/vm-100-disk-0.raw,size=4G",
        "mp0": "local:100/vm-100-disk-1.raw,mp=/srv,newopt=1",
        "mp1": "/bind,mp=/b,newopt=1",
        "mp2": "local:100/vm-100-disk-2.raw,mp=/two",
    }
    assert unparsable_mountpoints(values) == ["mp0", "mp1"]
    assert [mp.key for mp in iter_mountpoints(values)] == ["rootfs", "mp2"]
    assert used_volumes(values) == [
        "local:100/vm-100-disk-0.raw",
        "local:100/vm-100-disk-1.raw",
        "local:100/vm-100-disk-2.raw",
    ]
    assert "local:100/vm-100-disk-1.raw" not in used_volumes(values, exclude="mp0")


def test_used_volumes_and_owner() -> None:
    values = {
        "rootfs": "local:100/vm-100-disk-0.raw",
        "mp0": "/bind,mp=/b",
        "mp1": "/dev/sda,mp=/d",
        "mp2": "local:5,mp=/n",
        "mp3": "weird,mp=/w",
    }
    assert used_volumes(values) == ["local:100/vm-100-disk-0.raw", "local:5"]
    assert used_volumes(values, exclude="rootfs") == ["local:5"]
    assert volume_owner("local:100/vm-100-disk-0.raw") == 100
    assert volume_owner("local-zfs:subvol-2001-disk-3") == 2001
    assert volume_owner("local:base-100-disk-0/vm-101-disk-0") == 101
    assert volume_owner("local-lvm:base-300-disk-1") == 300
    assert volume_owner("local:backup/vzdump-lxc-100.tar") is None
    assert volume_owner("/srv/x") is None


def test_add_unused_volume_takes_first_free_index() -> None:
    values = {"unused0": "a:1", "unused2": "a:3"}
    assert add_unused_volume(values, "a:2") == "unused1"
    assert add_unused_volume(values, "a:3") is None
    assert add_unused_volume(values, "a:4") == "unused3"
    assert unused_keys({**values, "unused10": "x", "unusedx": "y"}) == [
        "unused0",
        "unused1",
        "unused2",
        "unused3",
        "unused10",
    ]
    full = {f"unused{i}": f"s:{i}" for i in range(256)}
    with pytest.raises(FormatError, match="Too many unused volumes"):
        add_unused_volume(full, "s:new")


def test_mp_path_rules() -> None:
    assert parse_mountpoint("mp0", "local:1,mp=/srv/..data/.x").path == "/srv/..data/.x"
    for bad in ("/a/./b", "/a/../b", "/a/.", "/a/..", "../a"):
        with pytest.raises(PropertyStringError) as err:
            parse_mountpoint("mp0", f"local:1,mp={bad}")
        assert err.value.details == {
            "mp": f"invalid format - {bad} contains illegal character sequences"
        }


def test_device_nodes() -> None:
    mode, rdev = check_device_node("/dev/null")
    assert os.major(rdev) == 1 and os.minor(rdev) == 3 and mode
    with pytest.raises(FormatError, match="Device /dev/does-not-exist does not exist"):
        check_device_node("/dev/does-not-exist")
    with (
        tempfile.NamedTemporaryFile() as tmp,
        pytest.raises(FormatError, match=r" is not a device$"),
    ):
        check_device_node(tmp.name)


def test_random_mac() -> None:
    macs = {random_mac() for _ in range(50)}
    assert len(macs) == 50
    for mac in macs:
        assert re.fullmatch(r"BC:24:11(:[0-9A-F]{2}){3}", mac)
    for _ in range(50):
        local = random_mac(None)
        first = int(local[:2], 16)
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}", local)
        assert first & 1 == 0 and first & 2 == 2
    assert random_mac("aa:bb").startswith("AA:BB:")


def test_mountpoint_dataclass_to_dict() -> None:
    mp = MountPoint("mp1", "/h", "/c", "bind", {"ro": True})
    assert mp.to_dict() == {"volume": "/h", "mp": "/c", "ro": True}
    assert mp.render() == "/h,mp=/c,ro=1"
