"""Test helper: vzdump archives built by hand with GNU tar, laid out as vzdump.md §3.1.

The config members (``vzdumpformat.MEMBERS``) come first (from a temporary directory, without
parent directory entries), then the data trees; pax headers through ``--acls/--xattrs``,
numeric owners; an unprivileged container's tar runs under ``lxc-usernsexec`` so the archive
holds container ids. The compressor is the real one (zstd, gzip, lzop), as vzdump pipes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.archive.idmap import IdMapEntry, usernsexec_argv
from shared.archive.tarflags import COMMON_TAR_FLAGS
from shared.archive.vzdumpformat import MEMBERS, write_members

# vzdump passes these two again after the common ones, as tarcreate does
VZDUMP_TAR_FLAGS = [*COMMON_TAR_FLAGS, "--one-file-system", "--warning=no-file-ignored"]
COMPRESSORS = {"zst": ["zstd", "-q", "-T1", "-c"], "gz": ["gzip", "-c"], "lzo": ["lzop", "-c"]}
STAMP = "2024_01_02-03_04_05"


def archive_name(vmid: int, compress: str = "zst", stamp: str = STAMP) -> str:
    return f"vzdump-lxc-{vmid}-{stamp}.tar" + (f".{compress}" if compress else "")


def vzdump_archive(
    out: Path,
    conf: str,
    trees: Sequence[tuple[Path, str]],
    *,
    firewall: str = "",
    idmap: Sequence[IdMapEntry] | None = None,
    compress: str = "zst",
) -> Path:
    """Write ``out``: the config members, then each ``(directory, source)`` as vzdump passes
    them (``(rootfs, "./")`` first, then e.g. ``(mp0_parent, "./data")``)."""
    tmpdir = Path(tempfile.mkdtemp(prefix="vzdumptmp", dir=out.parent))
    try:
        write_members(tmpdir, conf.encode(), firewall.encode(), (os.getuid(), os.getgid()))
        for path in (tmpdir, *tmpdir.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)  # tar of an unprivileged container runs as its root
        argv = [*usernsexec_argv(idmap), "tar", "cpf", "-", "--totals", *VZDUMP_TAR_FLAGS]
        argv += [f"--directory={tmpdir}", *MEMBERS]
        for directory, source in trees:
            argv += [f"--directory={directory}", "--no-anchored"]
            if idmap:
                argv.append("--exclude=lost+found")
            argv += ["--anchored", source]
        _run_pipeline(argv, COMPRESSORS.get(compress), out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _run_pipeline(tar: list[str], compressor: list[str] | None, out: Path) -> None:
    with open(out, "wb") as fh:
        if compressor is None:
            subprocess.run(tar, stdout=fh, stderr=subprocess.DEVNULL, check=True)
            return
        tar_proc = subprocess.Popen(tar, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert tar_proc.stdout is not None
        comp = subprocess.run(compressor, stdin=tar_proc.stdout, stdout=fh, check=False)
        tar_proc.stdout.close()
        if tar_proc.wait() != 0 or comp.returncode != 0:
            raise RuntimeError(f"archive pipeline failed: tar {tar_proc.returncode}")


def member_names(archive: Path) -> list[str]:
    """``tar -tf`` of an archive (GNU tar picks the decompressor)."""
    out = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, check=True)
    return out.stdout.decode("utf-8", "surrogateescape").splitlines()
