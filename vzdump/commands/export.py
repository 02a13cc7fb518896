"""``vzdump export <volid>``: a restic backup as a vzdump archive a Proxmox VE host restores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.errors import ParamError


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    volid: Annotated[str, typer.Argument(metavar="volume")],
    dumpdir: Annotated[Path | None, typer.Option("--dumpdir", help="Write it here.")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Write it into this dir storage's dump/.")
    ] = None,
    zstd: Annotated[int, typer.Option("--zstd", help="zstd threads (0: half the CPUs).")] = 0,
) -> None:
    """Write a restic backup out as vzdump-lxc-<vmid>-<time>.tar.zst."""
    from shared.backups.resticexport import export
    from shared.signals import interruptible
    from shared.storage.api import backup_dir

    if (dumpdir is None) == (storage is None):
        raise ParamError({"dumpdir": "give exactly one of --dumpdir and --storage"})
    dest = dumpdir if dumpdir is not None else backup_dir(str(storage))
    with interruptible():
        result = export(volid, dest, threads=zstd)
    print(f"{result.path} ({result.size} bytes, {result.members} members)")
