"""``pct migrate``, ``pct remote-migrate`` and the receiving side ``pct migrate-target``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from shared.cli import new_app, vmid_value
from shared.errors import ParamError

from .common import Bwlimit, VmidArg, echo, log_line

target_app = new_app("The receiving side of a migration (run by the source host over SSH).")

Restart = Annotated[bool | None, typer.Option(help="Use restart migration.")]
Online = Annotated[bool | None, typer.Option(help="Use online/live migration (not for LXC).")]
Timeout = Annotated[
    int, typer.Option(min=0, help="Timeout in seconds for shutdown for restart migration.")
]
TargetStorage = Annotated[
    str | None,
    typer.Option(help="Storage map 'src:dst,...'; one id maps all; '1' keeps the names."),
]


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("remote-migrate")(remote_migrate)
    app.add_typer(target_app, name="migrate-target", hidden=True)


def migrate(
    vmid: VmidArg,
    target: Annotated[str, typer.Argument(help="The remote (see 'pct remote list').")],
    online: Online = None,
    restart: Restart = None,
    timeout: Timeout = 180,
    target_storage: TargetStorage = None,
    bwlimit: Bwlimit = None,
) -> None:
    """Migrate the container to another ctkit host (restart migration); the source is removed."""
    from ..ops import migrate as migrate_ops

    opts = migrate_ops.Options(
        target, None, target_storage, None, bool(restart), bool(online), timeout, bwlimit, True
    )
    migrate_ops.migrate(vmid, opts, log_line)


def remote_migrate(
    vmid: VmidArg,
    target: Annotated[
        list[str], typer.Argument(metavar="[target-vmid] target", help="Target VMID and remote.")
    ],
    target_storage: Annotated[str, typer.Option(help="Storage map 'src:dst,...' or one id.")],
    target_bridge: Annotated[str, typer.Option(help="Bridge map 'src:dst,...' or one bridge.")],
    online: Online = None,
    restart: Restart = None,
    timeout: Timeout = 180,
    bwlimit: Bwlimit = None,
    delete: Annotated[
        bool | None, typer.Option(help="Delete the source CT and its volumes afterwards.")
    ] = None,
) -> None:
    """Migrate to another host, keeping the source (stopped, locked) unless --delete."""
    from ..ops import migrate as migrate_ops

    if len(target) not in (1, 2):
        raise ParamError({"target": "expected [<target-vmid>] <target>"})
    tvmid = vmid_value(target[0]) if len(target) == 2 else None
    opts = migrate_ops.Options(
        target[-1], tvmid, target_storage, target_bridge, bool(restart), bool(online), timeout,
        bwlimit, bool(delete),
    )  # fmt: skip
    migrate_ops.migrate(vmid, opts, log_line)


@target_app.command("info")
def info(
    vmid: Annotated[
        int | None, typer.Option(parser=vmid_value, help="Say whether this VMID is free.")
    ] = None,
    storages: Annotated[str, typer.Option(help="Storages to describe (comma-separated).")] = "",
    bridges: Annotated[str, typer.Option(help="Bridges to look for (comma-separated).")] = "",
) -> None:
    """Version, storages, bridges and whether a VMID is free (JSON)."""
    from ..ops import migrate_target as target_ops

    split = [s for s in storages.split(",") if s], [b for b in bridges.split(",") if b]
    echo(json.dumps(target_ops.host_info(vmid, *split), sort_keys=True) + "\n")


@target_app.command("outcome")
def outcome(vmid: VmidArg, token: Annotated[str, typer.Argument()]) -> None:
    """Whether the migration TOKEN committed VMID here (JSON): for a source that lost the
    commit's answer."""
    from shared.errors import ParamError
    from shared.runtime import migration

    if not migration.TOKEN_RE.fullmatch(token):
        raise ParamError({"token": "value does not match the regex pattern"})
    result = migration.commit_outcome(vmid, token, lambda m: print(m, file=sys.stderr))
    echo(json.dumps({"outcome": result}) + "\n")


@target_app.command("session")
def session(vmid: VmidArg) -> None:
    """Receive one migration; rolls back unless the source commits."""
    from ..ops import migrate_target as target_ops

    target_ops.serve(vmid, sys.stdin, sys.stdout, lambda m: print(m, file=sys.stderr))


@target_app.command("recv-btrfs")
def recv_btrfs(
    vmid: VmidArg, volid: Annotated[str, typer.Argument()], snap: Annotated[str, typer.Argument()]
) -> None:
    """Receive a btrfs send stream on stdin as a snapshot of a volume of the session."""
    from ..ops import migrate_target as target_ops

    # "ready": the source starts sending; "ok": received and synced, no need to wait for our exit
    target_ops.recv_btrfs(vmid, volid, snap, sys.stdin.buffer, lambda: echo("ready\n"))
    echo("ok\n")


@target_app.command("rsync")
def rsync(
    vmid: VmidArg,
    volid: Annotated[str, typer.Argument()],
    args: Annotated[list[str], typer.Argument(help="rsync's server arguments.")],
) -> None:
    """Run rsync's receiving server on a mounted volume of the session."""
    from ..ops import migrate_target as target_ops

    code = target_ops.rsync_into(vmid, volid, args)
    if code:
        raise typer.Exit(code)
