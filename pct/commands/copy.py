"""pct clone and move-volume (alias move_volume)."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import vmid_value as vmid_arg

from .common import Bwlimit, VmidArg, log_line

NewidArg = Annotated[
    int, typer.Argument(parser=vmid_arg, metavar="newid", help="VMID for the clone.")
]


def register(app: typer.Typer) -> None:
    app.command("clone")(clone)
    app.command("move-volume")(move_volume)
    app.command("move_volume", hidden=True)(move_volume)


def clone(
    vmid: VmidArg,
    newid: NewidArg,
    full: Annotated[
        bool | None,
        typer.Option(help="Create a full copy of all disks (default for non-templates)."),
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Target storage for full clone.")] = None,
    hostname: Annotated[str | None, typer.Option(help="Set a hostname for the new CT.")] = None,
    description: Annotated[str | None, typer.Option(help="Description for the new CT.")] = None,
    snapname: Annotated[
        str | None, typer.Option("--snapname", "--snapshot", help="The name of the snapshot.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target node (ctkit manages a single node).")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Add the new CT to this pool (ignored).")] = None,
    bwlimit: Bwlimit = None,
) -> None:
    """Create a container clone/copy."""
    from ..ops import clone as clone_ops  # imported when used: pct starts fast

    req = clone_ops.CloneRequest(
        vmid, newid, full=full, storage=storage, hostname=hostname, description=description,
        snapname=snapname, target=target, bwlimit=bwlimit,
    )  # fmt: skip
    clone_ops.clone(req, log=log_line)


def move_volume(
    vmid: VmidArg,
    volume: Annotated[
        str,
        typer.Argument(metavar="volume", help="Volume which will be moved (rootfs, mpN, unusedN)."),
    ],
    storage_arg: Annotated[
        str | None, typer.Argument(metavar="storage", help="Target Storage.", show_default=False)
    ] = None,
    target_vmid_arg: Annotated[
        int | None,
        typer.Argument(
            parser=vmid_arg,
            metavar="target-vmid",
            help="The (unique) ID of the VM.",
            show_default=False,
        ),
    ] = None,
    target_volume_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="target-volume",
            help="The config key the volume will be moved to.",
            show_default=False,
        ),
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Target Storage.")] = None,
    target_vmid: Annotated[
        int | None,
        typer.Option("--target-vmid", parser=vmid_arg, help="The (unique) ID of the VM."),
    ] = None,
    target_volume: Annotated[
        str | None,
        typer.Option(
            "--target-volume",
            help="The config key the volume will be moved to. Default is the source volume key.",
        ),
    ] = None,
    delete: Annotated[
        bool | None,
        typer.Option(
            help="Delete the original volume after successful copy. By default the original "
            "is kept as an unused volume entry."
        ),
    ] = None,
    bwlimit: Bwlimit = None,
    digest: Annotated[
        str | None,
        typer.Option(
            help="Prevent changes if current configuration file has different SHA1 digest."
        ),
    ] = None,
    target_digest: Annotated[
        str | None,
        typer.Option(
            "--target-digest",
            help="Prevent changes if the target CT's configuration file has a different "
            "SHA1 digest.",
        ),
    ] = None,
) -> None:
    """Move a rootfs-/mp-volume to a different storage or to a different container."""
    from ..ops import movevol

    movevol.move_volume(
        vmid, volume, storage_arg or storage, target_vmid_arg or target_vmid,
        target_volume_arg or target_volume, delete=bool(delete), bwlimit=bwlimit,
        digest=digest, target_digest=target_digest, log=log_line,
    )  # fmt: skip
