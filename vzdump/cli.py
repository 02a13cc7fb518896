"""The vzdump app: ``vzdump <vmid...> [options]`` plus prune, job, scheduler and timer commands."""

from __future__ import annotations

from shared.cli import new_app, run

from .commands import backup, backups, export, jobs, prune, storage

app = new_app("Back up containers (Proxmox's vzdump).")
for module in (backup, prune, jobs, backups, storage, export):
    module.register(app)


def main() -> None:
    run(app, "vzdump", default_command="backup")
