"""``vzdump storage add|set|remove|unlock``: restic backup storages and their secrets.

Shaped like Proxmox's ``pvesm add <type> <storage> [OPTIONS]`` / ``pvesm set`` /
``pvesm remove``, which is what a Proxmox user reaches for; ctkit has no pvesm, and the only
storages that need a command are restic's (their secrets must not be edited by hand). Secrets
come from files (``--password-file``, ``--env-file``), never from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import new_app
from shared.errors import ParamError

storage_app = new_app("Backup storages of type restic (storage.cfg and their secrets).")

PasswordOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="File holding the repository password (copied, 0600)."),
]
EnvOpt = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="NAME=value lines for restic's backend (AWS_ACCESS_KEY_ID, ...); copied, 0600.",
    ),
]
RepoOpt = Annotated[
    str | None,
    typer.Option("--repository", help="/path, sftp:user@host:/path, rest:URL, s3:URL, ..."),
]
ContentOpt = Annotated[str | None, typer.Option("--content")]
PruneOpt = Annotated[str | None, typer.Option("--prune-backups")]
MaxProtOpt = Annotated[str | None, typer.Option("--max-protected-backups")]
DisableOpt = Annotated[str | None, typer.Option("--disable")]
SftpOpt = Annotated[
    str | None,
    typer.Option("--sftp-command", help="ssh command for sftp: repositories (port, key, ...)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(storage_app, name="storage")


@storage_app.command("add")
def add_cmd(
    stype: Annotated[str, typer.Argument(metavar="type")],
    storage: Annotated[str, typer.Argument(metavar="storage")],
    repository: RepoOpt = None,
    password_file: PasswordOpt = None,
    env_file: EnvOpt = None,
    content: ContentOpt = None,
    prune_backups: PruneOpt = None,
    max_protected_backups: MaxProtOpt = None,
    disable: DisableOpt = None,
    sftp_command: SftpOpt = None,
    init: Annotated[bool, typer.Option("--init", help="Initialise a new repository.")] = False,
) -> None:
    """Add a restic storage (the repository is initialised with --init, else checked)."""
    from shared.storage import resticadmin

    if stype != "restic":
        raise ParamError({"type": f"only type 'restic' is added here, not '{stype}'"})
    resticadmin.add(
        storage,
        {
            "repository": repository,
            "content": content,
            "prune-backups": prune_backups,
            "max-protected-backups": max_protected_backups,
            "disable": disable,
            "sftp-command": sftp_command,
        },
        password=password_file,
        env=env_file,
        init=init,
    )
    print(f"storage '{storage}' added")


@storage_app.command("set")
def set_cmd(
    storage: Annotated[str, typer.Argument(metavar="storage")],
    repository: RepoOpt = None,
    password_file: PasswordOpt = None,
    env_file: EnvOpt = None,
    content: ContentOpt = None,
    prune_backups: PruneOpt = None,
    max_protected_backups: MaxProtOpt = None,
    disable: DisableOpt = None,
    sftp_command: SftpOpt = None,
    delete: Annotated[str | None, typer.Option("--delete", help="Settings to remove.")] = None,
) -> None:
    """Change a restic storage's settings or secrets."""
    from shared.storage import resticadmin

    resticadmin.change(
        storage,
        {
            "repository": repository,
            "content": content,
            "prune-backups": prune_backups,
            "max-protected-backups": max_protected_backups,
            "disable": disable,
            "sftp-command": sftp_command,
        },
        password=password_file,
        env=env_file,
        delete=[k for k in (delete or "").split(",") if k],
    )


@storage_app.command("remove")
def remove_cmd(storage: Annotated[str, typer.Argument(metavar="storage")]) -> None:
    """Remove a restic storage and its secrets (the repository and its backups stay)."""
    from shared.storage import resticadmin

    resticadmin.remove(storage)


@storage_app.command("unlock")
def unlock_cmd(storage: Annotated[str, typer.Argument(metavar="storage")]) -> None:
    """Remove stale restic locks (left by a killed backup) from the repository."""
    from shared.storage import resticadmin

    resticadmin.unlock(storage)
