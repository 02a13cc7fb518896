"""Where a guest's backup goes: names, the ``.dat`` temp file, the temp dir, sizes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared import paths, safefile
from shared.errors import AlreadyExistsError
from shared.formats.archivename import archive_extension, backup_basename, temp_archive_name
from shared.storage.loop import fs_type
from shared.treescan import scan_tree

# file systems where the temp dir may live next to the archive (vzdump §2.3)
LOCAL_TMP_FS = ("ext3", "ext4", "nfs", "nfs4", "reiserfs", "xfs")


@dataclass
class Target:
    """One guest's output files; ``archive`` is None for ``--stdout``."""

    dumpdir: Path
    base: str
    archive: Path | None
    dat: Path | None
    logfile: Path
    when: float = 0.0  # the backup's start (restic snapshots take it as their time)

    @classmethod
    def make(cls, dumpdir: Path, vmid: int, compress: str, stdout: bool, when: float) -> Target:
        base = backup_basename(vmid, when)
        archive = dumpdir / f"{base}{archive_extension(compress)}"
        return cls(
            dumpdir=dumpdir,
            base=base,
            archive=None if stdout else archive,
            dat=None if stdout else dumpdir / temp_archive_name(archive.name),
            logfile=dumpdir / f"{base}.log",
            when=when,
        )


NAME_TRIES = 3


def unused_start(dumpdir: Path, vmid: int, others: Sequence[Path] = ()) -> float:
    """A start time whose names are all free in ``dumpdir`` (and in ``others``, directories
    whose backups share the names). The names have one-second resolution: a second run of the
    same guest within that second waits for the next one instead of replacing the first run's
    archive and log."""
    taken = dumpdir
    for _ in range(NAME_TRIES):
        when = time.time()
        base = backup_basename(vmid, when)
        used = [d for d in (dumpdir, *others) if any(d.glob(f"{base}.*"))]
        if not used:
            return when
        taken = used[0] / base
        time.sleep(1.01 - when % 1)
    raise AlreadyExistsError(f"backup files '{taken}.*' already exist")


TAR_HEADER = 512


def tree_bytes(root: Path, sources: list[str]) -> int:
    """About how many bytes tar will stream for ``sources`` below ``root`` (file sizes plus a
    header each, one file system per source as ``--one-file-system``): the progress bar's
    total. Metadata only, and tar reads the same inodes right after from the cache."""
    total = 0
    for source in sources:
        with contextlib.suppress(OSError):
            scan = scan_tree(root / source)
            total += scan.size + TAR_HEADER * scan.entries
    return total


def temp_dir(
    tmpdir: str | None, target: Target, vmid: int, *, archive_beside: bool = True
) -> tuple[Path, str | None]:
    """(the guest's temp dir, the task-log note when it is not beside the archive).

    ``archive_beside=False``: the backup does not go into the dump directory (a restic
    storage's holds only its logs, under /var/log): the temp dir, which holds suspend mode's
    copy of the whole container, goes to /var/tmp, as Proxmox's does for a backup server."""
    if tmpdir:
        return Path(tmpdir) / f"vzdumptmp{os.getpid()}_{vmid}", None
    if not archive_beside:
        return paths.under(f"var/tmp/vzdumptmp{os.getpid()}_{vmid}"), None
    fstype = fs_type(target.dumpdir)
    if fstype in LOCAL_TMP_FS:
        return target.dumpdir / f"{target.base}.tmp", None
    path = paths.under(f"var/tmp/vzdumptmp{os.getpid()}_{vmid}")
    return path, f"filesystem type on dumpdir is '{fstype}' -using {path} for temporary files"


def fresh_dir(path: Path) -> None:
    safefile.fresh_dir(path, 0o700)


def format_size(nbytes: int) -> str:
    """``archive file size`` units: KB below 1 MiB, MB below 1 GiB, then GB/TB (binary)."""
    if nbytes < 1 << 20:
        return f"{nbytes // 1024}KB"
    if nbytes < 1 << 30:
        return f"{nbytes >> 20}MB"
    if nbytes < 1 << 40:
        return f"{nbytes / (1 << 30):.2f}GB"
    return f"{nbytes / (1 << 40):.2f}TB"


def format_duration(seconds: float) -> str:
    secs = int(seconds)
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def pigz_threads(option: int) -> int:
    """``--pigz``: 0 gzip, 1 pigz with half the CPUs, N pigz with N threads."""
    if option <= 0:
        return 0
    return option if option > 1 else max(1, ((os.cpu_count() or 1) + 1) // 2)
