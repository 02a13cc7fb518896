"""pct clone and move-volume (alias move_volume)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops import clone as clone_ops
from .common import VmidArg, log_line
from .common import _vmid as vmid_arg

NewidArg = Annotated[
    int, typer.Argument(parser=vmid_arg, metavar="newid", help="VMID for the clone.")
]
KiBs = Annotated[int | None, typer.Option(min=0, help="Override I/O bandwidth limit (KiB/s).")]


def register(app: typer.Typer) -> None:
    app.command("clone")(clone)


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
    bwlimit: KiBs = None,
) -> None:
    """Create a container clone/copy."""
    req = clone_ops.CloneRequest(
        vmid, newid, full=full, storage=storage, hostname=hostname, description=description,
        snapname=snapname, target=target, bwlimit=bwlimit,
    )  # fmt: skip
    clone_ops.clone(req, log=log_line)
