"""``vzdump prune <storage>``: show and apply a retention policy to a storage's backups."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared import prune
from shared.cli import OutputFormat, OutputFormatOption, print_json
from shared.errors import ParamError
from shared.formats.types import FormatError
from shared.storage.api import get_storage, reclaim_space, remove_backup

from ..engine.retention import candidates_on_storage

NOTE = (
    "NOTE: this is only a preview and might not be what a subsequent prune call does if "
    "backups are removed/added in the meantime."
)


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)


def _retention(storage: str, raw: str | None) -> dict[str, Any]:
    if raw is not None:
        try:
            return prune.parse_prune_backups(raw)
        except FormatError as err:
            details = getattr(err, "details", {})
            raise ParamError({"prune-backups": str(err), **details}) from None
    return get_storage(storage).prune_backups or {"keep-all": True}


def prune_cmd(
    storage: Annotated[str, typer.Argument(metavar="storage")],
    vmid: Annotated[int | None, typer.Option(help="Only this guest's backups.")] = None,
    prune_backups: Annotated[str | None, typer.Option("--prune-backups")] = None,
    dry_run: Annotated[bool | None, typer.Option("--dry-run")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Mark backups keep/remove/protected/renamed by retention and remove the 'remove' ones."""
    retention = _retention(storage, prune_backups)
    get_storage(storage)
    # one list: mark_group splits it per guest, and marks names without a VMID as renamed
    rows: list[dict[str, Any]] = [
        {"volid": cand.name, "vmid": cand.vmid, "ctime": cand.ctime, "mark": mark, "type": "lxc"}
        for cand, mark in prune.mark_group(candidates_on_storage(storage, vmid), retention)
    ]
    rows.sort(key=lambda r: (r["vmid"] or 0, -r["ctime"], r["volid"]))
    if not dry_run:
        removed = [r["volid"] for r in rows if r["mark"] == "remove"]
        for volid in removed:
            remove_backup(volid, reclaim=False)
        if removed:
            reclaim_space(storage)
    if output_format is not OutputFormat.text:
        print_json(rows, output_format)
        return
    if dry_run:
        print(NOTE)
    width = max([len("Backup")] + [len(r["volid"]) for r in rows])
    print(f"{'Backup':<{width}} {'Backup-ID':<9} {'Keep/Remove'}")
    for row in rows:
        print(f"{row['volid']:<{width}} {row['vmid'] or '':<9} {row['mark']}")
