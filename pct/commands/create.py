"""pct create and destroy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import EXTRA_ARGS, schema_options
from shared.errors import CtkitError, ParamError
from shared.formats.lines import read_config_text

from .common import (
    Bwlimit,
    VmidArg,
    ask_password,
    config_options,
    is_bool_option,
    is_known_option,
    log_line,
)


def register(app: typer.Typer) -> None:
    app.command("create", context_settings=EXTRA_ARGS)(
        schema_options(is_bool_option, is_known_option)(create)
    )
    app.command("destroy")(destroy)


def _read_keys(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return read_config_text(path, f"ssh public keys '{path}'")
    except OSError as err:
        raise CtkitError(f"unable to read ssh public keys '{path}': {err.strerror}") from None


def create(
    ctx: typer.Context,
    vmid: VmidArg,
    ostemplate: Annotated[str, typer.Argument(metavar="ostemplate")],
    password: Annotated[
        str | None,
        typer.Option(
            metavar="[PASSWORD]",
            help="Root password (min. 5 characters); without a value it is asked for twice.",
        ),
    ] = None,
    ssh_public_keys: Annotated[
        Path | None,
        typer.Option(
            "--ssh-public-keys", help="Setup public SSH keys (one key per line, OpenSSH format)."
        ),
    ] = None,
    storage: Annotated[str, typer.Option(help="Default storage.")] = "local",
    unprivileged: Annotated[bool | None, typer.Option(help="Unprivileged (default 1).")] = None,
    ignore_unpack_errors: Annotated[
        bool | None,
        typer.Option(
            "--ignore-unpack-errors/--no-ignore-unpack-errors",
            help="Ignore errors when extracting the template.",
        ),
    ] = None,
    bwlimit: Bwlimit = None,
    start: Annotated[bool | None, typer.Option(help="Start after creation.")] = None,
    pool: Annotated[str | None, typer.Option(help="Accepted for compatibility.")] = None,
) -> None:
    """Create a container from a template (volume id or path) and any container options."""
    from ..ops.create import CreateRequest
    from ..ops.create import create as create_ct

    if password == "":
        password = ask_password()
    if password is not None and len(password) < 5:
        raise ParamError({"password": "value must be at least 5 characters long"})
    from shared.guest.password import MAX_PASSPHRASE  # the guest package: only for a create

    if password is not None and len(password.encode()) > MAX_PASSPHRASE:
        raise ParamError({"password": f"value may only be {MAX_PASSPHRASE} bytes long"})
    req = CreateRequest(
        vmid=vmid,
        ostemplate=ostemplate,
        params=config_options(ctx.args),
        storage=storage,
        password=password,
        ssh_keys=_read_keys(ssh_public_keys),
        unprivileged=unprivileged is not False,
        ignore_unpack_errors=bool(ignore_unpack_errors),
        bwlimit=bwlimit,
        start=bool(start),
    )
    create_ct(req, log=log_line)


def destroy(
    vmid: VmidArg,
    force: Annotated[bool | None, typer.Option(help="Stop a running CT first.")] = None,
    purge: Annotated[bool | None, typer.Option(help="Also remove it from backup jobs.")] = None,
    destroy_unreferenced_disks: Annotated[
        bool | None,
        typer.Option(
            "--destroy-unreferenced-disks/--no-destroy-unreferenced-disks",
            help="Also destroy the volumes of this id that the config does not name, on every "
            "enabled storage.",
        ),
    ] = None,
) -> None:
    """Destroy the container and free the volumes it owns."""
    from ..ops import destroy as destroy_ops

    destroy_ops.destroy(
        vmid,
        force=bool(force),
        purge=bool(purge),
        unreferenced=bool(destroy_unreferenced_disks),
        log=log_line,
    )
