"""``pveam timer install|remove``: the daily ``pveam update`` as a systemd timer."""

from __future__ import annotations

from typing import Annotated

import typer

from shared import systemd
from shared.cli import new_app

from ..output import say, warn

app = new_app("Install or remove the systemd timer that runs 'pveam update' daily.")

UNITS = ("pveam-update.service", "pveam-update.timer")


@app.command("install")
def install(
    enable: Annotated[
        bool, typer.Option("--enable/--no-enable", help="Enable and start the timer (1).")
    ] = True,
) -> None:
    """Write pveam-update.service and .timer (daily, randomised delay, persistent) and
    enable the timer."""
    written = systemd.install_units(
        UNITS, exec_path=systemd.find_program("pveam"), enable=enable, log=warn
    )
    for path in written:
        say(f"wrote {path}")


@app.command("remove")
def remove() -> None:
    """Disable the timer and delete both unit files."""
    for path in systemd.remove_units(UNITS, log=warn):
        say(f"removed {path}")
