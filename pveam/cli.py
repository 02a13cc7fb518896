"""The pveam typer app: the commands of :mod:`pveam.commands` under Proxmox-style argv."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared.cli import new_app, resolve_command_name, run
from shared.errors import ParamError

from .commands import available, catalog, download, keys, sources, templates, timers, update

app = new_app("Proxmox VE appliance manager (ctkit): container templates and their signed index.")
app.command("update")(update.update)
app.command("available")(available.available)
app.command("download")(download.download)
app.command("list")(templates.list_templates)
app.command("remove")(templates.remove)
app.add_typer(keys.app, name="key")
app.add_typer(sources.app, name="source")
app.add_typer(catalog.app, name="index")
app.add_typer(timers.app, name="timer")


@app.command("help")
def help_(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None, typer.Argument(help="A command (and sub-command).")
    ] = None,
) -> None:
    """Show the help of pveam or of one command."""
    cmd: Any = ctx.find_root().command
    path = ["pveam"]
    for word in command or []:
        name = resolve_command_name(cmd, word) if hasattr(cmd, "commands") else None
        if name is None:
            raise ParamError({"command": f"no such command '{word}'"})
        cmd = cmd.commands[name]
        path.append(name)
    with type(ctx)(cmd, info_name=" ".join(path)) as sub:
        print(cmd.get_help(sub))


def main() -> None:
    run(app, "pveam")
