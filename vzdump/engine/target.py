"""Where a guest's backup goes: names, the ``.dat`` temp file, the temp dir, sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared import paths
from shared.archive.codecs import Compression
from shared.formats.archivename import archive_extension, backup_basename, temp_archive_name

# file systems where the temp dir may live next to the archive (vzdump §2.3)
LOCAL_TMP_FS = ("ext3", "ext4", "nfs", "nfs4", "reiserfs", "xfs")
COMPRESSION = {
    "0": Compression.NONE,
    "1": Compression.LZO,
    "lzo": Compression.LZO,
    "gzip": Compression.GZIP,
    "zstd": Compression.ZSTD,
}


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


def fs_type(path: Path) -> str:
    proc = subprocess.run(
        ["df", "-P", "-T", str(path)], capture_output=True, text=True, check=False
    )
    lines = proc.stdout.splitlines()
    return lines[1].split()[1] if len(lines) > 1 else ""


def temp_dir(tmpdir: str | None, target: Target, vmid: int) -> tuple[Path, str | None]:
    """(the guest's temp dir, the task-log note when it is not beside the archive)."""
    if tmpdir:
        return Path(tmpdir) / f"vzdumptmp{os.getpid()}_{vmid}", None
    fstype = fs_type(target.dumpdir)
    if fstype in LOCAL_TMP_FS:
        return target.dumpdir / f"{target.base}.tmp", None
    path = paths.under(f"var/tmp/vzdumptmp{os.getpid()}_{vmid}")
    return path, f"filesystem type on dumpdir is '{fstype}' -using {path} for temporary files"


def fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)


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


def zstd_threads(option: int) -> int:
    """``--zstd 0`` means half the CPUs, rounded up."""
    return option if option > 0 else max(1, ((os.cpu_count() or 1) + 1) // 2)


def pigz_threads(option: int) -> int:
    """``--pigz``: 0 gzip, 1 pigz with half the CPUs, N pigz with N threads."""
    if option <= 0:
        return 0
    return option if option > 1 else max(1, ((os.cpu_count() or 1) + 1) // 2)
