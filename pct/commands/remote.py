"""``pct remote add|list|check|remove``: the hosts containers may be migrated to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import OutputFormat, OutputFormatOption, new_app, print_json, vmid_value
from shared.errors import CommandError, ParamError, VerifyError

from .common import echo

app = new_app("Manage migration targets (other ctkit hosts reached over SSH).")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="remote")


def _hostkey(hostkey: str | None, hostkey_file: Path | None) -> str:
    from shared.remote import config as remotes

    if (hostkey is None) == (hostkey_file is None):
        raise ParamError({"hostkey": "give exactly one of --hostkey or --hostkey-file"})
    if hostkey_file is not None:
        return remotes.hostkey_from_file(hostkey_file)
    assert hostkey is not None
    return hostkey


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the remote.")],
    host: Annotated[str, typer.Option(help="Host name or address.")],
    hostkey: Annotated[
        str | None, typer.Option(help="The remote's SSH host key: '<type> <base64>'.")
    ] = None,
    hostkey_file: Annotated[
        Path | None, typer.Option(help="Read the host key from this .pub file.")
    ] = None,
    fingerprint_: Annotated[
        str | None,
        typer.Option("--fingerprint", help="Refuse unless the key has this SHA256 fingerprint."),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="SSH port of the remote.")] = 22,
    user: Annotated[str, typer.Option(help="SSH user on the remote.")] = "root",
    identity: Annotated[str | None, typer.Option(help="SSH private key file.")] = None,
    command: Annotated[str | None, typer.Option(help="Path of pct on the remote.")] = None,
    root: Annotated[str | None, typer.Option(help="CTKIT_ROOT on the remote.")] = None,
) -> None:
    """Add a remote; its host key is pinned (never learned on first use)."""
    from shared.remote import config as remotes
    from shared.remote.config import fingerprint

    key = _hostkey(hostkey, hostkey_file)
    remote = remotes.validate(remotes.Remote(name, host, key, port, user, identity, command, root))
    actual = fingerprint(key)
    if fingerprint_ is not None and fingerprint_ != actual:
        raise VerifyError(f"host key fingerprint {actual} does not match {fingerprint_}")
    remotes.add(remote)
    echo(f"added remote '{name}' (host key {actual})\n")


@app.command("list")
def list_(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List the remotes."""
    from shared.remote import config as remotes
    from shared.remote.config import fingerprint

    items = remotes.list_remotes()
    if output_format != OutputFormat.text:
        print_json([{"name": r.name, **r.props()} for r in items], output_format)
        return
    for r in items:
        extra = f" root={r.root}" if r.root else ""
        echo(f"{r.name:<16} {r.user}@{r.host}:{r.port} {fingerprint(r.hostkey)}{extra}\n")


@app.command("check")
def check(
    name: Annotated[str, typer.Argument()],
    vmid: Annotated[
        int | None, typer.Option(parser=vmid_value, help="Also check this VMID is free there.")
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Connect (strict host-key check) and report the remote's ctkit, storages, VMID."""
    from shared.remote import config as remotes

    from ..ops import remote as remote_ops

    remote = remotes.get(name)
    info = remote_ops.check(remote, vmid)
    if output_format != OutputFormat.text:
        print_json(remote_ops.as_json(info), output_format)
    else:
        for line in remote_ops.render(remote, info):
            echo(line + "\n")
    if not info.compatible:
        raise CommandError(f"remote '{name}' runs an incompatible ctkit ({info.ctkit})")


@app.command("remove")
def remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a remote."""
    from shared.remote import config as remotes

    remotes.remove(name)
