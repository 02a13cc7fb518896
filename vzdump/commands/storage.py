"""``vzdump storage add|set|remove|unlock``: restic backup storages and their secrets.

Shaped like Proxmox's ``pvesm add <type> <storage> [OPTIONS]`` / ``pvesm set`` /
``pvesm remove``, which is what a Proxmox user reaches for; ctkit has no pvesm, and the only
storages that need a command are restic's (their secrets must not be edited by hand). Secrets
come from files (``--password-file``, ``--env-file``), never from the command line.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.cli import new_app
from shared.errors import ParamError
from shared.formats.types import Bool

storage_app = new_app("Backup storages of type restic (storage.cfg and their secrets).")

# The settings and secrets `add` and `set` both take, declared once: (parameter, storage.cfg
# key or None for a secret file, its option); in this order in both commands' help.
COMMON: list[tuple[str, str | None, Any]] = [
    ("repository", "repository", Annotated[
        str | None,
        typer.Option("--repository", help="/path, sftp:user@host:/path, rest:URL, s3:URL, ..."),
    ]),
    ("password_file", None, Annotated[
        Path | None,
        typer.Option(
            "--password-file", help="File holding the repository password (copied, 0600)."
        ),
    ]),
    ("env_file", None, Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="NAME=value lines for restic's backend (AWS_ACCESS_KEY_ID, ...); copied, 0600.",
        ),
    ]),
    ("content", "content", Annotated[
        str | None, typer.Option("--content", help="Allowed content types (backup).")
    ]),
    ("prune_backups", "prune-backups", Annotated[
        str | None,
        typer.Option("--prune-backups", help="Retention of this storage's backups (keep-*=N)."),
    ]),
    ("max_protected_backups", "max-protected-backups", Annotated[
        str | None,
        typer.Option(
            "--max-protected-backups",
            help="Maximal number of protected backups per guest ('-1' for unlimited).",
        ),
    ]),
    ("disable", "disable", Annotated[
        bool | None,
        typer.Option("--disable/--no-disable", help="Flag to disable the storage (0 enables)."),
    ]),
    ("sftp_command", "sftp-command", Annotated[
        str | None,
        typer.Option("--sftp-command", help="ssh command for sftp: repositories (port, key, ...)."),
    ]),
]  # fmt: skip


@dataclass
class Settings:
    """What the COMMON options gave: storage.cfg values (None: not given) and secret files."""

    values: dict[str, str | None]
    password_file: Path | None
    env_file: Path | None


def takes_settings(func: Callable[..., None]) -> Callable[..., None]:
    """A command whose ``settings: Settings`` parameter stands for the COMMON options: typer
    sees those options in its place, the command gets them as one :class:`Settings`."""
    signature = inspect.signature(func, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "settings":
            params.append(param)
            continue
        params += [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                              annotation=option)
            for name, _key, option in COMMON
        ]  # fmt: skip

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name, _key, _option in COMMON}
        values = {key: _text(given[name]) for name, key, _option in COMMON if key is not None}
        func(**kwargs, settings=Settings(values, given["password_file"], given["env_file"]))

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return command


def _text(value: object) -> str | None:
    """An option's value as storage.cfg has it (a flag: 1 or 0)."""
    if isinstance(value, bool):
        return Bool().render(value)
    return None if value is None else str(value)


def register(app: typer.Typer) -> None:
    app.add_typer(storage_app, name="storage")


@storage_app.command("add")
@takes_settings
def add_cmd(
    stype: Annotated[str, typer.Argument(metavar="type")],
    storage: Annotated[str, typer.Argument(metavar="storage")],
    settings: Settings,
    init: Annotated[bool, typer.Option("--init", help="Initialise a new repository.")] = False,
) -> None:
    """Add a restic storage (the repository is initialised with --init, else checked)."""
    from shared.storage import resticadmin

    if stype != "restic":
        raise ParamError({"type": f"only type 'restic' is added here, not '{stype}'"})
    resticadmin.add(
        storage,
        settings.values,
        password=settings.password_file,
        env=settings.env_file,
        init=init,
    )
    print(f"storage '{storage}' added")


@storage_app.command("set")
@takes_settings
def set_cmd(
    storage: Annotated[str, typer.Argument(metavar="storage")],
    settings: Settings,
    delete: Annotated[str | None, typer.Option("--delete", help="Settings to remove.")] = None,
) -> None:
    """Change a restic storage's settings or secrets."""
    from shared.storage import resticadmin

    resticadmin.change(
        storage,
        settings.values,
        password=settings.password_file,
        env=settings.env_file,
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
