"""The pct app: assembles the command modules and runs them Proxmox-style."""

from __future__ import annotations

from shared.cli import new_app, run

from .commands import (
    autostart,
    config,
    copy,
    create,
    disk,
    lifecycle,
    maint,
    migrate,
    optionshelp,
    remote,
    restoretest,
    state,
)
from .commands import restore as restore_commands
from .commands import snapshot as snapshot_commands

app = new_app("Manage containers (Proxmox's pct).")
for module in (create, config, lifecycle, disk, state, copy, autostart, maint):
    module.register(app)
restore_commands.register(app)
restoretest.register(app)
snapshot_commands.register(app)
migrate.register(app)
remote.register(app)
optionshelp.register(app)  # last: it extends the help of create, set and restore


def main() -> None:
    run(app, "pct")
