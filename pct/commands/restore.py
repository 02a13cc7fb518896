"""pct restore."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.cli import EXTRA_ARGS, schema_options

from .common import Bwlimit, VmidArg, config_options, is_bool_option, is_known_option, log_line


def register(app: typer.Typer) -> None:
    app.command("restore", context_settings=EXTRA_ARGS)(
        schema_options(is_bool_option, is_known_option)(restore)
    )


def restore(
    ctx: typer.Context,
    vmid: VmidArg,
    ostemplate: Annotated[str, typer.Argument(metavar="ostemplate")],
    storage: Annotated[str, typer.Option(help="Default storage.")] = "local",
    force: Annotated[bool | None, typer.Option(help="Replace an existing (stopped) CT.")] = None,
    unique: Annotated[bool | None, typer.Option(help="New MAC addresses.")] = None,
    unprivileged: Annotated[bool | None, typer.Option(help="Default: as in the backup.")] = None,
    ignore_unpack_errors: Annotated[
        bool | None,
        typer.Option(
            "--ignore-unpack-errors/--no-ignore-unpack-errors",
            help="Ignore errors when extracting the archive.",
        ),
    ] = None,
    bwlimit: Bwlimit = None,
    start: Annotated[bool | None, typer.Option(help="Start after the restore.")] = None,
    trust_archive: Annotated[
        bool | None,
        typer.Option(
            help="Also restore what reaches outside the container: raw lxc.* keys, "
            "hookscript, bind and device mount points, devN."
        ),
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Accepted for compatibility.")] = None,
    password: Annotated[str | None, typer.Option(help="Ignored on restore.")] = None,
    ssh_public_keys: Annotated[
        Path | None, typer.Option("--ssh-public-keys", help="Ignored on restore.")
    ] = None,
) -> None:
    """Restore a container from a vzdump archive (backup volume id, path, or - for stdin)."""
    from shared.signals import interruptible

    from ..ops.restore import RestoreRequest
    from ..ops.restore import restore as restore_ct

    req = RestoreRequest(
        vmid=vmid,
        archive=ostemplate,
        params=config_options(ctx.args),
        storage=storage,
        force=bool(force),
        unique=bool(unique),
        unprivileged=unprivileged,
        ignore_unpack_errors=bool(ignore_unpack_errors),
        bwlimit=bwlimit,
        start=bool(start),
        trust_archive=bool(trust_archive),
        stdin=sys.stdin.buffer if ostemplate == "-" else None,
        progress=True,
    )
    with interruptible():  # TERM and HUP as Ctrl-C: cleanup first, then exit 130
        restore_ct(req, log=log_line)
