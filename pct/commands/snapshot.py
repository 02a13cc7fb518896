"""pct snapshot, listsnapshot, delsnapshot, rollback."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json
from shared.formats.types import ConfigId, FormatError

from .common import VmidArg, echo, log_line


def _snapname(raw: str) -> str:
    try:
        return ConfigId.parse(raw)
    except FormatError as err:
        raise typer.BadParameter(str(err)) from None


SnapnameArg = Annotated[
    str,
    typer.Argument(
        parser=_snapname, metavar="snapname", show_default=False, help="The snapshot name."
    ),
]


def register(app: typer.Typer) -> None:
    for name, func in (
        ("snapshot", snapshot), ("listsnapshot", listsnapshot),
        ("delsnapshot", delsnapshot), ("rollback", rollback),
    ):  # fmt: skip
        app.command(name)(func)


def snapshot(
    vmid: VmidArg,
    snapname: SnapnameArg,
    description: Annotated[str | None, typer.Option(help="A textual description.")] = None,
) -> None:
    """Snapshot the container (every volume must support snapshots)."""
    from ..ops import snapshot as ops

    ops.create(vmid, snapname, description=description, log=log_line)


def listsnapshot(vmid: VmidArg, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List the snapshots as a tree; 'current' is the present state."""
    from ..ops import snapshot as ops

    entries = ops.listing(vmid)
    if output_format is OutputFormat.text:
        echo(ops.render(entries))
    else:
        print_json(entries, output_format)


def delsnapshot(
    vmid: VmidArg,
    snapname: SnapnameArg,
    force: Annotated[
        bool | None,
        typer.Option(help="Drop it from the config even if a storage snapshot stays."),
    ] = None,
) -> None:
    """Delete a snapshot."""
    from ..ops import snapshot as ops

    ops.delete(vmid, snapname, force=bool(force), log=log_line)


def rollback(
    vmid: VmidArg,
    snapname: SnapnameArg,
    start: Annotated[
        bool | None, typer.Option(help="Start the container after the rollback.")
    ] = None,
) -> None:
    """Roll the container back to a snapshot (a running container is stopped first)."""
    from ..ops import snapshot as ops

    ops.rollback(vmid, snapname, start=bool(start), log=log_line)
