from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from shared.errors import ArchiveError
from shared.formats.archivename import (
    archive_extension,
    archive_info,
    backup_basename,
    temp_archive_name,
)

STAMP = "2024_01_01-02_00_00"


@pytest.fixture
def vienna(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time = Europe/Vienna (UTC+1 in January, UTC+2 in July)."""
    monkeypatch.setenv("TZ", "Europe/Vienna")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# name -> (type, format, compression, decompressor, is_std_name, vmid)
CASES = {
    f"vzdump-lxc-100-{STAMP}.tar": ("lxc", "tar", None, None, True, 100),
    f"vzdump-lxc-100-{STAMP}.tar.gz": ("lxc", "tar", "gz", ("tar", "-z"), True, 100),
    f"vzdump-lxc-100-{STAMP}.tar.lzo": ("lxc", "tar", "lzo", ("tar", "--lzop"), True, 100),
    f"vzdump-lxc-100-{STAMP}.tar.zst": ("lxc", "tar", "zst", ("tar", "--zstd"), True, 100),
    f"vzdump-lxc-100-{STAMP}.tar.bz2": ("lxc", "tar", "bz2", ("tar", "--bzip2"), True, 100),
    f"vzdump-openvz-1234-{STAMP}.tgz": ("openvz", "tar", "gz", ("tar", "-z"), True, 1234),
    f"vzdump-qemu-999999999-{STAMP}.vma.zst": (
        "qemu",
        "vma",
        "zst",
        ("zstd", "-q", "-d", "-c"),
        True,
        999999999,
    ),
    f"vzdump-qemu-100-{STAMP}.vma": ("qemu", "vma", None, None, True, 100),
    # still backups, but not standard names: pruning never touches them
    f"vzdump-lxc-99-{STAMP}.tar": ("lxc", "tar", None, None, False, None),
    f"vzdump-lxc-0100-{STAMP}.tar": ("lxc", "tar", None, None, False, None),
    f"vzdump-lxc-1000000000-{STAMP}.tar": ("lxc", "tar", None, None, False, None),
    "vzdump-lxc-100-renamed.tar.zst": ("lxc", "tar", "zst", ("tar", "--zstd"), False, None),
    "vzdump-lxc-100-2024_01_01-02_00_00-copy.tar": ("lxc", "tar", None, None, False, None),
    "vzdump-lxc-100-2024_1_01-02_00_00.tar": ("lxc", "tar", None, None, False, None),
    "vzdump-lxc-100-2024_13_01-02_00_00.tar": ("lxc", "tar", None, None, False, None),
    "vzdump-lxc-100-2023_02_29-02_00_00.tar": ("lxc", "tar", None, None, False, None),
    # times that cannot be placed in every zone (retention's local reading raised)
    "vzdump-lxc-100-0001_01_01-00_00_00.tar": ("lxc", "tar", None, None, False, None),
    "vzdump-lxc-100-9999_12_31-23_59_59.tar": ("lxc", "tar", None, None, False, None),
    f"vzdump-qemu-100-{STAMP}.tgz": ("qemu", "tar", "gz", ("tar", "-z"), True, 100),
}

NOT_ARCHIVES = [
    f"vzdump-lxc-100-{STAMP}.tar.xz",
    f"vzdump-lxc-100-{STAMP}.tar.gz.1",
    f"vzdump-lxc-100-{STAMP}.tgz.gz",
    f"vzdump-lxc-100-{STAMP}.log",
    f"vzdump-lxc-100-{STAMP}.tar.zst.notes",
    f"vzdump-lxc-100-{STAMP}.tar.dat",
    f"vzdump-lxc-100-{STAMP}.TAR",
    f"vzdump-vm-100-{STAMP}.tar",
    f"xvzdump-lxc-100-{STAMP}.tar",
    "vzdump-lxc-.tar",
    "",
]


@pytest.mark.parametrize("name", sorted(CASES))
def test_archive_info_table(name: str) -> None:
    btype, fmt, comp, decomp, std, vmid = CASES[name]
    info = archive_info(name)
    assert (info.type, info.format, info.compression) == (btype, fmt, comp)
    assert info.decompressor == decomp
    assert (info.is_std_name, info.vmid) == (std, vmid)
    assert info.filename == name
    assert info.protectedfilename == name + ".protected"
    if std:
        assert info.logfilename == name.split(f"{STAMP}.")[0] + STAMP + ".log"
        assert info.notesfilename == name + ".notes"
        assert info.ctime is not None
    else:
        assert info.logfilename is None and info.ctime is None
        assert info.notesfilename is None


@pytest.mark.parametrize("name", NOT_ARCHIVES)
def test_not_an_archive(name: str) -> None:
    with pytest.raises(ArchiveError) as exc:
        archive_info(name)
    assert str(exc.value) == f"couldn't determine archive info from '{name}'"


def test_path_and_volid_use_the_last_component() -> None:
    assert archive_info(f"/var/lib/vz/dump/vzdump-lxc-100-{STAMP}.tar").vmid == 100
    assert archive_info(f"local:backup/vzdump-lxc-101-{STAMP}.tar.zst").vmid == 101
    with pytest.raises(ArchiveError, match=r"from '/x/vzdump-lxc-100.tar/y'"):
        archive_info("/x/vzdump-lxc-100.tar/y")


@pytest.mark.usefixtures("vienna")
def test_ctime_is_local_time() -> None:
    winter = archive_info(f"vzdump-lxc-100-{STAMP}.tar").ctime
    assert winter == int(dt.datetime(2024, 1, 1, 1, 0, tzinfo=dt.UTC).timestamp())
    summer = archive_info("vzdump-lxc-100-2024_07_01-02_00_00.tar").ctime
    assert summer == int(dt.datetime(2024, 7, 1, 0, 0, tzinfo=dt.UTC).timestamp())


@pytest.mark.usefixtures("vienna")
def test_backup_basename_local_time_and_round_trip() -> None:
    when = dt.datetime(2024, 1, 1, 1, 0, 5, tzinfo=dt.UTC)
    assert backup_basename(100, when) == "vzdump-lxc-100-2024_01_01-02_00_05"
    assert backup_basename(100, when.timestamp()) == "vzdump-lxc-100-2024_01_01-02_00_05"
    assert (
        backup_basename(7, dt.datetime(2024, 3, 4, 5, 6, 7)) == "vzdump-lxc-7-2024_03_04-05_06_07"
    )
    now = time.time()
    info = archive_info(backup_basename(123456, now) + ".tar.zst")
    assert info.is_std_name and info.vmid == 123456 and info.ctime == int(now)


@pytest.mark.parametrize(
    ("compress", "ext"),
    [
        (None, ".tar"),
        (False, ".tar"),
        ("0", ".tar"),
        ("gzip", ".tar.gz"),
        ("lzo", ".tar.lzo"),
        ("1", ".tar.lzo"),
        (True, ".tar.lzo"),
        ("zstd", ".tar.zst"),
    ],
)
def test_archive_extension(compress: str | bool | None, ext: str) -> None:
    assert archive_extension(compress) == ext


def test_archive_extension_unknown() -> None:
    with pytest.raises(ArchiveError, match=r"unknown compression 'xz'"):
        archive_extension("xz")


@pytest.mark.parametrize(
    ("archive", "tmp"),
    [
        (f"vzdump-lxc-100-{STAMP}.tar.zst", f"vzdump-lxc-100-{STAMP}.tar.dat"),
        (f"vzdump-lxc-100-{STAMP}.tar.gz", f"vzdump-lxc-100-{STAMP}.tar.dat"),
        (f"vzdump-lxc-100-{STAMP}.tar", f"vzdump-lxc-100-{STAMP}.dat"),
        (f"/a.b/vzdump-lxc-100-{STAMP}.tar.lzo", f"/a.b/vzdump-lxc-100-{STAMP}.tar.dat"),
    ],
)
def test_temp_archive_name(archive: str, tmp: str) -> None:
    assert temp_archive_name(archive) == tmp


def test_temp_archive_name_needs_an_extension() -> None:
    with pytest.raises(ArchiveError):
        temp_archive_name("/a.b/archive")
