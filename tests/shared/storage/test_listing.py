"""Listing templates (pveam §10 cases 32–34) and backups (vzdump §5.3) at the library level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage import listing
from shared.storage.config import load_config

from .conftest import WriteCfg

B100 = "vzdump-lxc-100-2024_01_01-02_00_00"
B100B = "vzdump-lxc-100-2024_02_01-02_00_00"


@pytest.fixture
def cache(ctroot: Path) -> Path:
    directory = ctroot / "var/lib/vz/template/cache"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def dump(ctroot: Path) -> Path:
    directory = ctroot / "var/lib/vz/dump"
    directory.mkdir(parents=True)
    return directory


def test_case_32_only_templates_sorted_case_insensitively(cache: Path) -> None:
    for name in [
        "B.tar.gz",
        "a.tar.zst",
        "c.tgz",
        "d.tar.xz.part",
        ".hidden.tar.gz",
        "f.tar.gz.tmp_dwnl.1234",
    ]:
        (cache / name).write_bytes(b"x" * 3)
    (cache / "e.tar.gz").mkdir()
    entries = listing.list_templates(load_config().storage("local"))
    assert [e.volid for e in entries] == ["local:vztmpl/a.tar.zst", "local:vztmpl/B.tar.gz"]
    assert [e.format for e in entries] == ["tzst", "tgz"]
    assert [e.size for e in entries] == [3, 3]
    assert entries[1].path == cache / "B.tar.gz"
    assert entries[0].content == "vztmpl" and entries[0].name == "a.tar.zst"


def test_symlinks_followed_broken_ones_skipped(cache: Path, tmp_path: Path) -> None:
    target = tmp_path / "real.bin"
    target.write_bytes(b"12345")
    (cache / "linked.TAR.XZ").symlink_to(target)
    (cache / "broken.tar.gz").symlink_to(tmp_path / "missing")
    (cache / "dirlink.tar.gz").symlink_to(tmp_path)
    (cache / "plain.tar").write_bytes(b"")
    entries = listing.list_templates(load_config().storage("local"))
    assert [(e.name, e.size, e.format) for e in entries] == [
        ("linked.TAR.XZ", 5, "txz"),
        ("plain.tar", 0, "tar"),
    ]


def test_case_33_size_in_bytes(cache: Path) -> None:
    with open(cache / "big.tar.zst", "wb") as fh:
        fh.truncate(230637158)
    [entry] = listing.list_templates(load_config().storage("local"))
    assert entry.size == 230637158


def test_missing_directory_lists_nothing(ctroot: Path) -> None:
    assert listing.list_templates(load_config().storage("local")) == []
    assert listing.list_backups(load_config().storage("local")) == []


def test_case_34_storage_without_templates(write_cfg: WriteCfg) -> None:
    write_cfg("dir: nt\n\tpath /srv/nt\n\tcontent backup\n")
    with pytest.raises(StorageError, match=r"^Storage does not support templates!$"):
        listing.list_templates(load_config().storage("nt"))


def _touch(path: Path, data: bytes = b"") -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def backups(dump: Path) -> Path:
    _touch(dump / f"{B100}.tar.zst", b"z" * 10)
    _touch(dump / f"{B100}.log")
    _touch(dump / f"{B100}.tar.zst.notes", "first line\nsecond ü\n".encode())
    _touch(dump / f"{B100B}.tar", b"t" * 20)
    _touch(dump / f"{B100B}.tar.protected")
    _touch(dump / "vzdump-lxc-100-renamed.tar.gz", b"r")
    _touch(dump / "vzdump-qemu-100-2024_01_03-02_00_00.vma.zst", b"q")
    _touch(dump / "vzdump-lxc-101-2024_01_01-02_00_00.tgz", b"o")
    _touch(dump / "vzdump-lxc-1100-2024_01_01-02_00_00.tar", b"o")
    _touch(dump / "my-own-backup.tar", b"m")
    _touch(dump / f"{B100}.tar.dat")
    _touch(dump / ".vzdump-lxc-100-2024_01_09-02_00_00.tar")
    (dump / "vzdump-lxc-100-2024_01_05-02_00_00.tar").mkdir()
    return dump


def test_backup_listing_fields(backups: Path) -> None:
    entries = {e.name: e for e in listing.list_backups(load_config().storage("local"))}
    assert sorted(entries) == sorted(
        [
            f"{B100}.tar.zst",
            f"{B100B}.tar",
            "vzdump-lxc-100-renamed.tar.gz",
            "vzdump-qemu-100-2024_01_03-02_00_00.vma.zst",
            "vzdump-lxc-101-2024_01_01-02_00_00.tgz",
            "vzdump-lxc-1100-2024_01_01-02_00_00.tar",
            "my-own-backup.tar",
        ]
    )
    first = entries[f"{B100}.tar.zst"]
    assert first.volid == f"local:backup/{B100}.tar.zst"
    assert (first.format, first.size, first.vmid, first.subtype) == ("tar.zst", 10, 100, "lxc")
    assert first.archive is not None and first.archive.ctime is not None
    assert first.ctime == first.archive.ctime
    assert first.notes == "first line"  # listings show the first line only
    assert not first.protected
    assert entries[f"{B100B}.tar"].protected and entries[f"{B100B}.tar"].notes is None
    renamed = entries["vzdump-lxc-100-renamed.tar.gz"]
    assert renamed.archive is not None and not renamed.archive.is_std_name
    assert renamed.vmid == 100 and renamed.subtype == "lxc"  # the VMID still shows in the name
    assert renamed.ctime == int(os.stat(backups / renamed.name).st_ctime)
    own = entries["my-own-backup.tar"]
    assert (own.subtype, own.vmid, own.archive) == ("unknown", None, None)
    assert entries["vzdump-qemu-100-2024_01_03-02_00_00.vma.zst"].subtype == "qemu"


def test_backup_listing_by_vmid_and_type(backups: Path) -> None:
    store = load_config().storage("local")
    names = [e.name for e in listing.list_backups(store, 100)]
    assert names == [
        f"{B100}.tar.zst",
        f"{B100B}.tar",
        "vzdump-lxc-100-renamed.tar.gz",
        "vzdump-qemu-100-2024_01_03-02_00_00.vma.zst",
    ]
    assert all(e.vmid == 100 for e in listing.list_backups(store, 100))
    lxc = [e.name for e in listing.list_backups(store, 100, "lxc")]
    assert "vzdump-qemu-100-2024_01_03-02_00_00.vma.zst" not in lxc and len(lxc) == 3
    assert [e.name for e in listing.list_backups(store, 1100)] == [
        "vzdump-lxc-1100-2024_01_01-02_00_00.tar"
    ]


def test_only_regular_files_are_backups_and_any_protected_name_protects(dump: Path) -> None:
    """A FIFO named like an archive is no backup (its removal says 'can't find file'); a
    .protected that is a dangling symlink protects, as the removal reads it."""
    os.mkfifo(dump / f"{B100}.tar.zst")
    _touch(dump / f"{B100B}.tar")
    (dump / f"{B100B}.tar.protected").symlink_to(dump / "nonexistent")
    [entry] = listing.list_backups(load_config().storage("local"))
    assert entry.name == f"{B100B}.tar" and entry.protected
