"""The pct app: assembles the command modules and runs them Proxmox-style."""

from __future__ import annotations

from shared.cli import new_app, run

from .commands import config, create, disk, lifecycle, migrate, remote, restoretest
from .commands import restore as restore_commands
from .commands import snapshot as snapshot_commands

app = new_app("Manage containers (Proxmox's pct).")
for module in (create, config, lifecycle, disk):
    module.register(app)
restore_commands.register(app)
restoretest.register(app)
snapshot_commands.register(app)
migrate.register(app)
remote.register(app)


def main() -> None:
    run(app, "pct")
