"""A restic backup written out as a Proxmox-compatible ``vzdump-lxc-<vmid>-<time>.tar.zst``.

The tar stream is the one restore extracts (shared.backups.resticstream: ``./etc/vzdump/``
members first, owners in the container's id space), compressed with zstd and written under a
temporary name that is renamed only when the stream ended cleanly, so a failure or Ctrl-C
leaves no archive behind. The name carries the snapshot's time as vzdump names do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zstandard

from shared import atomic
from shared.errors import ConfigError, StorageError
from shared.formats.archivename import backup_basename
from shared.storage import resticbackups
from shared.storage.api import restic_volume

from .resticstream import open_snapshot

CHUNK = 1 << 20


@dataclass(frozen=True)
class Exported:
    path: Path
    size: int
    members: int


def export(volid: str, dest: Path, *, threads: int = 0) -> Exported:
    """Write the restic backup ``volid`` into directory ``dest``; returns the new archive."""
    found = restic_volume(volid)
    if found is None:
        raise StorageError(f"'{volid}' is not a backup on a restic storage")
    store, volname = found
    if not dest.is_dir() or dest.is_symlink():
        raise ConfigError(f"target directory '{dest}' does not exist")
    vmid, stamp = resticbackups.volname_parts(volname)
    target = dest / f"{backup_basename(vmid, resticbackups.parse_restic_time(stamp))}.tar.zst"
    if os.path.lexists(target):
        raise StorageError(f"'{target}' already exists")
    workers = threads or max(1, ((os.cpu_count() or 1) + 1) // 2)
    # with the frame checksum, as zstd(1) writes it: without it, verify passed an exported
    # archive with a flipped byte
    params = zstandard.ZstdCompressionParameters.from_level(3, threads=workers, write_checksum=1)
    stream = open_snapshot(store, volname)
    try:
        with atomic.atomic_open(target, mode=0o644, tmp_name=f"{target.name}.dat") as fh:
            writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                fh, closefd=False
            )
            while data := stream.read(CHUNK):
                writer.write(data)
            writer.flush(zstandard.FLUSH_FRAME)
    finally:
        stream.close()
    return Exported(target, target.stat().st_size, stream.members)
