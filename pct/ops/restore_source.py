"""Where a restore's archive comes from, and the backed-up config read out of it (pct.md §4.1).

An archive is a backup volume id, a path, or ``-`` for stdin. The backed-up config and firewall
config are read from its first members before anything is allocated; from stdin, the bytes read
for that are kept and replayed to the extraction (``vzdumpformat.ReplayableStream``), so a
stdin restore sees the backed-up config before extraction too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from shared.archive.codecs import Compression, compression_from_name
from shared.archive.decode import Source
from shared.archive.vzdumpformat import ReplayableStream, read_members
from shared.backups.resticstream import SnapshotStream, open_snapshot
from shared.ctconfig.config import Config, Section, parse_config
from shared.errors import ArchiveError, NotFoundError
from shared.storage.api import backup_path, restic_volume
from shared.storage.volid import is_volume_id

Log = Callable[[str], None]
STDIN = "-"


@dataclass
class ArchiveSource:
    """The archive as given (``label``) and where its bytes come from."""

    label: str
    path: Path | None = None  # None: stdin
    stream: ReplayableStream | None = None
    compression: Compression | None = None  # None: sniffed from the magic bytes
    snapshot: SnapshotStream | None = None  # a restic backup's stream

    def left_out_warning(self) -> str | None:
        """What a restic backup's stream left out, for the restore's log."""
        count, first = self.snapshot.left_out() if self.snapshot is not None else (0, None)
        if not count:
            return None
        return (
            f"WARN: {count} device node(s) left out, first '{first}': restic keeps no device "
            "numbers (a backup to a dir storage keeps them)"
        )

    @property
    def is_stdin(self) -> bool:
        return self.path is None and self.label == STDIN

    def size(self) -> int | None:
        return self.path.stat().st_size if self.path is not None else None

    def reader(self) -> Source:
        """The archive's bytes for the extraction (stdin: replayed from the start)."""
        if self.path is not None:
            return self.path
        assert self.stream is not None
        return cast(IO[bytes], self.stream)

    def read_config(self) -> tuple[bytes | None, bytes | None]:
        """``pct.conf`` (None: the archive has none) and ``pct.fw`` (None: none or empty)."""
        source = self.path if self.path is not None else self.stream
        assert source is not None
        return read_members(source, self.compression)


def open_source(archive: str, stdin: IO[bytes] | None = None) -> ArchiveSource:
    """A backup volume id, a path, or ``-`` for stdin; compression from the extension."""
    if archive == STDIN:
        raw = stdin if stdin is not None else sys.stdin.buffer
        return ArchiveSource(STDIN, stream=ReplayableStream(raw))
    if restic := restic_volume(archive):
        # a restic snapshot as a vzdump tar stream, read like stdin (shared.backups.resticstream)
        snapshot = open_snapshot(*restic)
        return ArchiveSource(
            archive,
            stream=ReplayableStream(cast(IO[bytes], snapshot)),
            compression=Compression.NONE,
            snapshot=snapshot,
        )
    path = backup_path(archive) if is_volume_id(archive) else Path(archive)
    if not os.path.isfile(path):  # os.path says no to any error (a name too long)
        raise NotFoundError(f"can't find file '{archive}'")
    return ArchiveSource(archive, path.absolute(), compression=compression_from_name(path.name))


def recover_config(
    source: ArchiveSource, vmid: int, log: Log
) -> tuple[Config | None, bytes | None]:
    """The backed-up config (no snapshots, no pending changes; None: stdin without one) and
    the backed-up firewall config (None: none or empty)."""
    log(f"recovering backed-up configuration from '{source.label}'")
    raw, firewall = source.read_config()
    if raw is None:
        if source.is_stdin:
            return None, None
        raise ArchiveError("ERROR: archive contains no configuration file")
    backup = parse_config(raw, vmid)
    for warning in backup.warnings:
        log(warning)
    backup.snapshots.clear()
    backup.pending = Section(vmid)
    return backup, firewall
