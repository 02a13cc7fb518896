"""vzdump archive names (spec vzdump §2.1, §2.2.1): parse them, build them.

``archive_info`` follows Proxmox's ``PVE::Storage::archive_info``: any
``vzdump-(lxc|openvz|qemu)-<anything>.(tgz|tar|vma)[.(gz|lzo|zst|bz2)]`` is a backup archive; it is
a *standard* name only when ``<anything>`` is ``<vmid>-YYYY_MM_DD-hh_mm_ss`` with a 3 to 9 digit
VMID without leading zero. Pruning relies on that distinction, so it is kept exact.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

from ..archive.codecs import Compression
from ..errors import ArchiveError

# Proxmox's BACKUP_EXT_RE_2: group 1 = the whole extension, group 2 = the compression.
BACKUP_EXT = r"\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?)"
ARCHIVE_RE = re.compile(rf"(vzdump-(lxc|openvz|qemu)-.+{BACKUP_EXT})")
STD_NAME_RE = (
    r"(vzdump-{type}-([1-9][0-9]{{2,8}})-([0-9]{{4}})_([0-9]{{2}})_([0-9]{{2}})"
    r"-([0-9]{{2}})_([0-9]{{2}})_([0-9]{{2}}))\.{ext}"
)

LOG_EXT = ".log"
NOTES_EXT = ".notes"
PROTECTED_EXT = ".protected"
VERIFY_EXT = ".verify"  # the last verification results (shared.backups.sidecar)

# How to read each format/compression (Proxmox's decompressor_info).
DECOMPRESSORS: dict[str, dict[str, tuple[str, ...]]] = {
    "tar": {
        "gz": ("tar", "-z"),
        "lzo": ("tar", "--lzop"),
        "zst": ("tar", "--zstd"),
        "bz2": ("tar", "--bzip2"),
    },
    "vma": {
        "gz": ("zcat",),
        "lzo": ("lzop", "-d", "-c"),
        "zst": ("zstd", "-q", "-d", "-c"),
        "bz2": ("bzcat", "-q"),
    },
}

# vzdump --compress value -> codec: the one table (the extension is ``.tar`` plus the codec's;
# vzdump §1.1, acceptance case 2)
COMPRESS_CODECS = {
    "0": Compression.NONE,
    "1": Compression.LZO,
    "gzip": Compression.GZIP,
    "lzo": Compression.LZO,
    "zstd": Compression.ZSTD,
}


@dataclass(frozen=True)
class ArchiveInfo:
    """What a backup archive's file name says about it."""

    filename: str  # the archive's base name
    type: str  # lxc | openvz | qemu
    extension: str  # tgz, tar, tar.zst, vma.gz, ...
    format: str  # tar | vma (tgz is read as tar)
    compression: str | None  # gz | lzo | zst | bz2
    decompressor: tuple[str, ...] | None
    is_std_name: bool
    vmid: int | None  # standard names only
    ctime: int | None  # the name's timestamp read as local time; standard names only
    logfilename: str | None  # <base>.log; standard names only (the base is not known otherwise)
    notesfilename: str | None  # <archive>.notes; standard names only, as in Proxmox
    protectedfilename: str  # <archive>.protected


def archive_info(archive: str) -> ArchiveInfo:
    """Parse a backup archive name, path or volume id (only the last path component counts).

    Raises ArchiveError ``couldn't determine archive info from '<archive>'`` for anything that is
    not a vzdump archive name.
    """
    name = archive.rsplit("/", 1)[-1]
    m = ARCHIVE_RE.fullmatch(name)
    if not m:
        raise ArchiveError(f"couldn't determine archive info from '{archive}'")
    filename, btype, extension, comp = m.group(1), m.group(2), m.group(3), m.group(4)
    fmt = extension.split(".", 1)[0]
    if fmt == "tgz" and comp is None:
        fmt, comp = "tar", "gz"
    std = re.fullmatch(STD_NAME_RE.format(type=btype, ext=re.escape(extension)), name)
    vmid = ctime = logname = notesname = None
    if std:
        ctime = _local_ctime(*(int(g) for g in std.group(3, 4, 5, 6, 7, 8)))
        if ctime is not None:
            vmid = int(std.group(2))
            logname = std.group(1) + LOG_EXT
            notesname = filename + NOTES_EXT
    return ArchiveInfo(
        filename=filename,
        type=btype,
        extension=extension,
        format=fmt,
        compression=comp,
        decompressor=DECOMPRESSORS[fmt].get(comp) if comp else None,
        is_std_name=ctime is not None,
        vmid=vmid,
        ctime=ctime,
        logfilename=logname,
        notesfilename=notesname,
        protectedfilename=filename + PROTECTED_EXT,
    )


def _local_ctime(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> int | None:
    """Epoch of a local wall-clock time; None for an impossible date (Perl's timelocal dies)
    or one that cannot be placed (see :func:`placeable`): such a name is a renamed backup."""
    try:
        dt.datetime(year, month, day, hh, mm, ss)
        epoch = int(time.mktime((year, month, day, hh, mm, ss, 0, 0, -1)))
    except (ValueError, OverflowError):
        return None
    return epoch if placeable(epoch) else None


# more than any zone's offset plus the day before a time that Python's local reading probes
_PLACE_MARGIN = 2 * 86400


def placeable(epoch: int) -> bool:
    """Whether a backup's time reads as a date in every time zone: not within two days of the
    ends of the calendar (years 1 and 9999), where retention's local reading of a name with
    year 0001 raised 'year 0 is out of range' and failed every backup of the guest."""
    try:
        for edge in (epoch - _PLACE_MARGIN, epoch + _PLACE_MARGIN):
            dt.datetime.fromtimestamp(edge, dt.UTC)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def backup_basename(vmid: int, when: float | dt.datetime | None = None, btype: str = "lxc") -> str:
    """``vzdump-lxc-<vmid>-YYYY_MM_DD-hh_mm_ss`` in local time (``when`` defaults to now)."""
    if when is None:
        stamp = time.localtime()
    elif isinstance(when, dt.datetime):
        local = when.astimezone() if when.tzinfo is not None else when
        stamp = local.timetuple()
    else:
        stamp = time.localtime(when)
    return f"vzdump-{btype}-{vmid}-" + time.strftime("%Y_%m_%d-%H_%M_%S", stamp)


def compress_codec(compress: str | bool | None) -> Compression:
    """The codec of a vzdump ``--compress`` value (none when off)."""
    if compress is None or compress is False:
        key = "0"
    elif compress is True:
        key = "1"
    else:
        key = str(compress)
    try:
        return COMPRESS_CODECS[key]
    except KeyError:
        raise ArchiveError(f"unknown compression '{compress}'") from None


def archive_extension(compress: str | bool | None) -> str:
    """The archive extension for a vzdump ``--compress`` value (``.tar`` when off)."""
    return ".tar" + compress_codec(compress).extension


def temp_archive_name(archive: str) -> str:
    """The ``.dat`` name written while the archive is produced: the last extension replaced.

    ``….tar.zst`` → ``….tar.dat``; an uncompressed ``….tar`` → ``….dat``.
    """
    head, sep, tail = archive.rpartition("/")
    stem, dot, _ext = tail.rpartition(".")
    if not dot:
        raise ArchiveError(f"archive name '{archive}' has no extension")
    return f"{head}{sep}{stem}.dat"
