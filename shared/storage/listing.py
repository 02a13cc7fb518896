"""Listing a storage's content: templates and backups (Proxmox's list_volumes).

Only regular files directly inside the content directory count: no recursion, dotfiles
skipped, symlinks followed (broken ones skipped), directories, FIFOs and devices skipped.
Container images are listed by the plugins, whose layouts differ.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ArchiveError, StorageError
from ..formats.archivename import BACKUP_EXT, PROTECTED_EXT, ArchiveInfo, archive_info
from ..regularfile import read_regular
from .volid import TEMPLATE_EXT_RE, template_format

if TYPE_CHECKING:
    from .base import Storage

_BACKUP_FILE_RE = re.compile(rf"[^/]+{BACKUP_EXT}")
_STD_VMID_RE = r"-([1-9][0-9]{{2,8}})-[^/]+\.{ext}"


@dataclass(frozen=True)
class VolumeEntry:
    """One volume of a listing."""

    volid: str
    content: str  # vztmpl | backup | iso | snippets | images | rootdir
    format: str  # tzst, tar.zst, iso, snippet, raw, subvol, ...
    size: int  # bytes (0 for directory volumes without a quota)
    path: Path
    ctime: int | None = None
    vmid: int | None = None
    subtype: str | None = None  # backups: lxc | qemu | openvz | unknown
    notes: str | None = None  # backups: first line of <archive>.notes
    protected: bool = False  # backups: <archive>.protected exists
    archive: ArchiveInfo | None = None  # backups: what the name says
    used: int | None = None  # images: allocated bytes
    host: str | None = None  # backups in a repository shared by hosts: the node that wrote it

    @property
    def name(self) -> str:
        return self.volid.split(":", 1)[1].rsplit("/", 1)[-1]


def scan_files(directory: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(name, path, stat) of every regular file (or symlink to one) directly in ``directory``:
    what a volume id's removal takes as a file (a FIFO was listed and marked, then its removal
    said 'can't find file' at every later backup)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            st = os.stat(entry.path)  # follows symlinks; a broken one raises
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        yield entry.name, Path(entry.path), st


def list_templates(storage: Storage) -> list[VolumeEntry]:
    """Templates sorted by volid, case-insensitively (pveam §5)."""
    if not storage.has_content("vztmpl"):
        raise StorageError("Storage does not support templates!")
    entries = [
        VolumeEntry(
            volid=storage.volid(f"vztmpl/{name}"),
            content="vztmpl",
            format=template_format(name),
            size=st.st_size,
            path=path,
            ctime=int(st.st_ctime),
        )
        for name, path, st in scan_files(storage.subdir("vztmpl"))
        if TEMPLATE_EXT_RE.search(name)
    ]
    return sorted(entries, key=lambda e: (e.volid.lower(), e.volid))


def list_backups(
    storage: Storage, vmid: int | None = None, subtype: str | None = None
) -> list[VolumeEntry]:
    """Backup archives in ``<path>/dump`` (optionally of one guest / one guest type)."""
    result = []
    for name, path, st in scan_files(storage.subdir("backup")):
        m = _BACKUP_FILE_RE.fullmatch(name)
        if not m or (vmid is not None and not re.search(rf"\S+-{vmid}-\S+", name)):
            continue
        entry = _backup_entry(storage, name, m.group(1), path, st, vmid)
        if subtype is None or entry.subtype == subtype:
            result.append(entry)
    return sorted(result, key=lambda e: e.volid)


def _backup_entry(
    storage: Storage, name: str, fmt: str, path: Path, st: os.stat_result, vmid: int | None
) -> VolumeEntry:
    try:
        info: ArchiveInfo | None = archive_info(name)
    except ArchiveError:
        info = None
    owner = vmid
    if owner is None:
        m = re.search(_STD_VMID_RE.format(ext=re.escape(fmt)), name)
        owner = int(m.group(1)) if m else None
    return VolumeEntry(
        volid=storage.volid(f"backup/{name}"),
        content="backup",
        format=fmt,
        size=st.st_size,
        path=path,
        ctime=info.ctime if info and info.ctime is not None else int(st.st_ctime),
        vmid=owner,
        subtype=info.type if info else "unknown",
        notes=read_notes(path),
        protected=is_protected(path),
        archive=info,
    )


def is_protected(archive: Path) -> bool:
    """Whether ``<archive>.protected`` is there as a name, whatever it is or points to: the
    listing and the removal read it alike (a dangling symlink listed as unprotected was marked,
    then refused at each removal), and the safe reading keeps the backup."""
    return os.path.lexists(f"{archive}{PROTECTED_EXT}")


NOTES_READ_MAX = 64 * 1024  # a listing shows one line; a huge notes file must not be read whole


def read_notes(archive: Path) -> str | None:
    """The first line of a backup's notes (``<archive>.notes``), as Proxmox's listings show."""
    try:  # never through a symlink (one to /etc/shadow printed its first line), nor a FIFO
        found = read_regular(f"{archive}.notes", NOTES_READ_MAX, follow_symlinks=False)
    except OSError:
        return None
    if found is None:
        return None
    data = found[0][:NOTES_READ_MAX].split(b"\n", 1)[0]
    return data.decode("utf-8", errors="replace")
