"""``vzdump prune <storage>``: show and apply a retention policy to a storage's backups."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from shared.cli import OutputFormat, OutputFormatOption, print_json, vmid_value

NOTE = (
    "NOTE: this is only a preview and might not be what a subsequent prune call does if "
    "backups are removed/added in the meantime."
)


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def prune_cmd(
    storage: Annotated[str, typer.Argument(metavar="storage")],
    vmid: Annotated[
        int | None, typer.Option(parser=vmid_value, help="Only this guest's backups.")
    ] = None,
    prune_backups: Annotated[
        str | None,
        typer.Option(
            "--prune-backups",
            help="Use these retention options instead of those from the storage configuration.",
        ),
    ] = None,
    dry_run: Annotated[
        bool | None,
        typer.Option("--dry-run", help="Only show what would be pruned, don't delete anything."),
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Mark backups keep/remove/protected/renamed by retention and remove the 'remove' ones."""
    from ..engine.retention import prune_storage, storage_retention

    retention = storage_retention(storage, prune_backups)
    marked = prune_storage(storage, vmid, retention, dry_run=bool(dry_run), log=_stderr)
    rows: list[dict[str, Any]] = [
        {"volid": c.name, "vmid": c.vmid, "ctime": c.ctime, "mark": mark, "type": c.type}
        for c, mark in marked
    ]
    if output_format is not OutputFormat.text:
        print_json(rows, output_format)
        return
    if dry_run:
        print(NOTE)
    width = max([len("Backup")] + [len(r["volid"]) for r in rows])
    print(f"{'Backup':<{width}} {'Backup-ID':<9} {'Keep/Remove'}")
    for row in rows:
        print(f"{row['volid']:<{width}} {row['vmid'] or '':<9} {row['mark']}")
