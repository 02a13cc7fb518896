from __future__ import annotations

import pytest

from shared.errors import StorageError
from shared.storage.volid import (
    VolName,
    base_name,
    disk_index_re,
    disk_name,
    is_template_name,
    is_volume_id,
    parse_volname,
    parse_volume_id,
    template_format,
)

B = "vzdump-lxc-100-2024_01_01-02_00_00"

VOLNAMES = {
    "vztmpl/debian-12-standard_12.7-1_amd64.tar.zst": VolName(
        "vztmpl", "debian-12-standard_12.7-1_amd64.tar.zst", format="raw"
    ),
    "vztmpl/A.TAR.GZ": VolName("vztmpl", "A.TAR.GZ", format="raw"),
    "vztmpl/x.tar": VolName("vztmpl", "x.tar", format="raw"),
    "vztmpl/x.tar.bz2": VolName("vztmpl", "x.tar.bz2", format="raw"),
    "vztmpl/x y.tar.xz": VolName("vztmpl", "x y.tar.xz", format="raw"),
    f"backup/{B}.tar.zst": VolName("backup", f"{B}.tar.zst", 100, format="raw"),
    "backup/vzdump-qemu-5-x.vma.gz": VolName("backup", "vzdump-qemu-5-x.vma.gz", 5, format="raw"),
    "backup/my.tgz": VolName("backup", "my.tgz", None, format="raw"),
    "iso/debian.iso": VolName("iso", "debian.iso", format="raw"),
    "iso/boot.IMG": VolName("iso", "boot.IMG", format="raw"),
    "snippets/hook.pl": VolName("snippets", "hook.pl", format="raw"),
    "snippets/.hidden": VolName("snippets", ".hidden", format="raw"),
    "100/vm-100-disk-0.raw": VolName("images", "vm-100-disk-0.raw", 100, format="raw"),
    "100/subvol-100-disk-1.subvol": VolName(
        "images", "subvol-100-disk-1.subvol", 100, format="subvol"
    ),
    "100/base-100-disk-0.raw": VolName(
        "images", "base-100-disk-0.raw", 100, is_base=True, format="raw"
    ),
    "101/vm-101-disk-0.qcow2": VolName("images", "vm-101-disk-0.qcow2", 101, format="qcow2"),
    "100/base-100-disk-0.raw/101/vm-101-disk-0.qcow2": VolName(
        "images", "vm-101-disk-0.qcow2", 101, "base-100-disk-0.raw", 100, False, "qcow2"
    ),
    "rootdir/100": VolName("rootdir", "100", 100),
}

BAD_VOLNAMES = {
    "vztmpl/x.zip": "unable to parse directory volume name 'vztmpl/x.zip'",
    "vztmpl/x.tgz": "unable to parse directory volume name 'vztmpl/x.tgz'",
    "vztmpl/x.tar.lz4": "unable to parse directory volume name 'vztmpl/x.tar.lz4'",
    "vztmpl/x.tar.gz.1": "unable to parse directory volume name 'vztmpl/x.tar.gz.1'",
    "vztmpl/a/b.tar.gz": "unable to parse directory volume name 'vztmpl/a/b.tar.gz'",
    "vztmpl/../x.tar.gz": "unable to parse directory volume name 'vztmpl/../x.tar.gz'",
    "VZTMPL/x.tar.gz": "unable to parse directory volume name 'VZTMPL/x.tar.gz'",
    "backup/x.tar.xz": "unable to parse directory volume name 'backup/x.tar.xz'",
    "backup/x.TAR": "unable to parse directory volume name 'backup/x.TAR'",
    "iso/x.img/y": "unable to parse directory volume name 'iso/x.img/y'",
    "snippets/..": "unable to parse directory volume name 'snippets/..'",
    "snippets/a/b": "unable to parse directory volume name 'snippets/a/b'",
    "snippets/": "unable to parse directory volume name 'snippets/'",
    "images/vm-100-disk-0.raw": "unable to parse directory volume name 'images/vm-100-disk-0.raw'",
    "100/vm-100-disk-0.img": "unable to parse volume filename 'vm-100-disk-0.img'",
    "100/../../etc/x.raw": "unable to parse volume filename '../../etc/x.raw'",
    "0100/vm-100-disk-0.raw": "unable to parse directory volume name '0100/vm-100-disk-0.raw'",
    "": "unable to parse directory volume name ''",
    "snippets/a\0b": "unable to parse directory volume name 'snippets/a\0b'",
}


@pytest.mark.parametrize("volname", sorted(VOLNAMES))
def test_parse_volname(volname: str) -> None:
    assert parse_volname(volname) == VOLNAMES[volname]


@pytest.mark.parametrize("volname", sorted(BAD_VOLNAMES))
def test_parse_volname_errors(volname: str) -> None:
    with pytest.raises(StorageError) as exc:
        parse_volname(volname)
    assert str(exc.value) == BAD_VOLNAMES[volname]


@pytest.mark.parametrize(
    ("volid", "parts"),
    [
        ("local:vztmpl/a.tar.gz", ("local", "vztmpl/a.tar.gz")),
        ("My.Store-1:100/vm-100-disk-0.raw", ("My.Store-1", "100/vm-100-disk-0.raw")),
        ("ab:x:y", ("ab", "x:y")),
    ],
)
def test_parse_volume_id(volid: str, parts: tuple[str, str]) -> None:
    assert parse_volume_id(volid) == parts
    assert is_volume_id(volid)


@pytest.mark.parametrize(
    "volid",
    ["/etc/hostname", "x:vztmpl/a.tar", "1a:b", "a-:b", "local:", "nocolon", "ſtore:100/x.raw"],
)
def test_parse_volume_id_errors(volid: str) -> None:
    assert not is_volume_id(volid)
    with pytest.raises(StorageError, match=rf"^unable to parse volume ID '{volid}'$"):
        parse_volume_id(volid)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.tar.gz", "tgz"),
        ("a.TAR.XZ", "txz"),
        ("a.tar.zst", "tzst"),
        ("a.tar.bz2", "tbz2"),
        ("a.Tar", "tar"),
    ],
)
def test_template_format(name: str, fmt: str) -> None:
    assert template_format(name) == fmt
    assert is_template_name(name)


@pytest.mark.parametrize(
    "name",
    ["a.tgz", "a.tar.lz4", "a.tar.gz.1", ".a.tar.gz", "a.zip", "d/a.tar", "é" * 127 + ".tar"],
)
def test_not_template_names(name: str) -> None:
    assert not is_template_name(name)


def test_disk_names_and_indexes() -> None:
    assert disk_name(100, 0, "raw") == "vm-100-disk-0.raw"
    assert disk_name(100, 3, "subvol") == "subvol-100-disk-3.subvol"
    rx = disk_index_re(100)
    used = [
        "vm-100-disk-0.raw",
        "subvol-100-disk-1.subvol",
        "base-100-disk-2.raw",
        "vm-100-disk-3",
        "subvol-100-disk-4.subvol@snap1",
        "vm-100-disk-5.qcow2",
    ]
    assert [int(m.group(1)) for n in used if (m := rx.fullmatch(n))] == [0, 1, 2, 3, 4, 5]
    assert not any(rx.fullmatch(n) for n in ["vm-1100-disk-0.raw", "vm-100-disk-x.raw", "foo"])
    assert base_name("vm-100-disk-0.raw") == "base-100-disk-0.raw"
    assert base_name("subvol-100-disk-0.subvol") == "subvol-100-disk-0.subvol"
