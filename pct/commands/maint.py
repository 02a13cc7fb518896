"""pct rescan and fsck."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import vmid_value as vmid_arg

from .common import VmidArg, log_line


def register(app: typer.Typer) -> None:
    app.command("rescan")(rescan)
    app.command("fsck")(fsck)


def rescan(
    vmid: Annotated[
        int | None,
        typer.Option(parser=vmid_arg, help="The (unique) ID of the VM.", show_default=False),
    ] = None,
    dryrun: Annotated[
        bool | None,
        typer.Option(help="Do not actually write changes out to container configs."),
    ] = None,
) -> None:
    """Rescan all storages and update disk sizes and unused disk images."""
    from ..ops import rescan as rescan_ops  # imported when used: pct starts fast

    rescan_ops.rescan(vmid, dryrun=bool(dryrun), log=log_line)


def fsck(
    vmid: VmidArg,
    device: Annotated[
        str, typer.Option(help="A volume on which to run the file system check (rootfs, mpN).")
    ] = "rootfs",
    force: Annotated[
        bool | None, typer.Option(help="Force checking, even if the file system seems clean.")
    ] = None,
) -> None:
    """Run a file system check (fsck) on a container volume."""
    from ..ops import fsck as fsck_ops

    fsck_ops.fsck(vmid, device=device, force=bool(force), log=log_line)
