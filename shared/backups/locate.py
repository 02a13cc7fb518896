"""From a backup volume id to the archive on disk, with every check done before any reading.

This is the seam for other backup storages: :func:`locate` answers for storages that keep
archives as files (``dir``, ``btrfs``); a storage of another kind (restic) gets its own branch
here and its own implementation of the operations, and callers stay unchanged.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from shared.archive.codecs import Compression, compression_from_name
from shared.errors import ArchiveError, NotFoundError, StorageError
from shared.formats.archivename import ArchiveInfo, archive_info
from shared.storage.api import check_volume_content, resolve_volume
from shared.storage.base import Storage
from shared.storage.volid import is_volume_id

ARCHIVE_STORAGE_TYPES = ("dir", "btrfs")


@dataclass(frozen=True)
class Backup:
    """One container backup archive that exists as a regular file."""

    volid: str  # or the path, for an archive outside any storage
    storage: Storage | None
    path: Path
    info: ArchiveInfo
    compression: Compression

    @property
    def logfile(self) -> Path | None:
        """The backup's ``.log`` beside it (standard names only), if present."""
        name = self.info.logfilename
        return self.path.parent / name if name else None


def check_archive_storage(store: Storage) -> None:
    if store.type_name not in ARCHIVE_STORAGE_TYPES:
        raise StorageError(
            f"storage '{store.id}' (type {store.type_name}) does not support this operation"
        )


def locate(volid: str) -> Backup:
    """The container backup ``volid`` names: a volume id of content ``backup`` on an archive
    storage, a tar archive of a container (not a VM's vma), a regular file (no symlink)."""
    if not is_volume_id(volid):
        raise StorageError(
            f"unable to parse volume ID '{volid}'",
            hint="give a volume ID such as 'local:backup/<file>'",
        )
    store, vol = resolve_volume(volid)
    check_volume_content(vol, volid, "backup")
    check_archive_storage(store)
    path = store.subdir("backup") / vol.name
    return _checked_file(volid, store, path, archive_info(vol.name))


def archive_file(path: Path, volid: str | None = None) -> Backup:
    """A container backup archive given by path (vzdump's own, just written to a dump
    directory that need not be a storage); ``volid`` names it in messages when known."""
    info = archive_info(path.name)
    return _checked_file(volid or str(path), None, path, info)


def _checked_file(volid: str, store: Storage | None, path: Path, info: ArchiveInfo) -> Backup:
    if info.format != "tar" or info.type == "qemu":
        raise ArchiveError(f"'{volid}' is not a container backup (format {info.extension})")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotFoundError(f"can't find file '{volid}'") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"'{volid}' is not a regular file")
    return Backup(volid, store, path, info, compression_from_name(path.name))
