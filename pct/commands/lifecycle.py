"""pct start, stop, shutdown, reboot, enter, exec, console, mount, unmount."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.errors import CtkitError, StateError

from .common import VmidArg, echo, log_line

# the library is imported inside each command: a command loads only what it uses

KEEP_ENV_HELP = (
    "Pass the caller's environment into the container (default: only TERM, standard PATH)."
)


def register(app: typer.Typer) -> None:
    for name, func in (
        ("start", start), ("stop", stop), ("shutdown", shutdown), ("reboot", reboot),
        ("enter", enter), ("exec", exec_), ("console", console), ("mount", mount),
        ("unmount", unmount),
    ):  # fmt: skip
        app.command(name)(func)


def start(
    vmid: VmidArg,
    skiplock: Annotated[bool | None, typer.Option(help="Ignore locks.")] = None,
    debug: Annotated[
        bool | None,
        typer.Option(help="LXC logs at debug level; a failed start prints that log."),
    ] = None,
) -> None:
    """Start the container."""
    from shared.runtime import lifecycle, lxcapi, recovery, stopper

    owed = stopper.owed_by_dead(vmid)  # a killed reboot's: the recovery starts it
    dead = recovery.recover(vmid, log_line)
    if (owed or (dead is not None and dead.stopped)) and lxcapi.is_running(vmid):
        return  # the recovery of a killed stop-mode backup or reboot started it already
    lifecycle.start(vmid, skiplock=bool(skiplock), debug=bool(debug), log=log_line)


def stop(
    vmid: VmidArg,
    skiplock: Annotated[bool | None, typer.Option(help="Ignore locks.")] = None,
    overrule_shutdown: Annotated[
        bool | None,
        typer.Option(
            "--overrule-shutdown/--no-overrule-shutdown",
            help="Try to abort a running 'pct shutdown' of the CT before stopping it.",
        ),
    ] = None,
) -> None:
    """Stop the container at once (kill)."""
    from shared.runtime import lifecycle

    lifecycle.stop(
        vmid,
        skiplock=bool(skiplock),
        overrule_shutdown=bool(overrule_shutdown),
        log=log_line,
    )


def shutdown(
    vmid: VmidArg,
    timeout: Annotated[int, typer.Option(min=0, help="Seconds to wait.")] = 60,
    force_stop: Annotated[
        bool | None, typer.Option("--forceStop/--no-forceStop", help="Kill after timeout.")
    ] = None,
) -> None:
    """Shut the container down cleanly."""
    from shared.runtime import lifecycle, stopper

    lifecycle.shutdown(
        vmid, timeout=timeout, force_stop=bool(force_stop), log=log_line, task=stopper.SHUTDOWN
    )


def reboot(
    vmid: VmidArg,
    timeout: Annotated[int | None, typer.Option(min=0, help="Seconds to wait.")] = None,
) -> None:
    """Reboot: shutdown, then start (pending changes are applied)."""
    from shared.runtime import lifecycle

    lifecycle.reboot(vmid, timeout=timeout, log=log_line)


def _require_running(vmid: int) -> None:
    from pct.ops.freeze import running_cgroup
    from shared.ctconfig import store

    store.load(vmid)
    cgroup = running_cgroup(vmid, f"container '{vmid}' not running!")
    if cgroup.is_frozen():  # lxc-attach would wait, unkillable, until a resume
        raise StateError(f"CT {vmid} is suspended - resume it first ('pct resume {vmid}')")


def enter(
    vmid: VmidArg,
    keep_env: Annotated[bool, typer.Option("--keep-env/--no-keep-env", help=KEEP_ENV_HELP)] = False,
) -> None:
    """Open a shell in the container."""
    from shared.runtime import lxcapi

    _require_running(vmid)
    argv = lxcapi.attach_argv(vmid, [], keep_env=keep_env)
    lxcapi.become(argv)


def exec_(
    vmid: VmidArg,
    command: Annotated[
        list[str] | None, typer.Argument(help="The command and its arguments.")
    ] = None,
    keep_env: Annotated[bool, typer.Option("--keep-env/--no-keep-env", help=KEEP_ENV_HELP)] = False,
) -> None:
    """Run a command in the container; exits with the command's status."""
    from shared.runtime import lxcapi

    _require_running(vmid)
    if not command:
        raise CtkitError("missing command")
    argv = lxcapi.attach_argv(vmid, command, keep_env=keep_env)
    lxcapi.become(argv)


def console(
    vmid: VmidArg,
    escape: Annotated[str, typer.Option(help="Escape sequence prefix, e.g. ^a.")] = "^a",
) -> None:
    """Attach to the container's console."""
    from shared.ctconfig import store
    from shared.runtime import lxcapi

    conf = store.load(vmid)
    if not lxcapi.is_running(vmid):
        raise StateError(f"container '{vmid}' not running!")
    mode = conf.get("cmode") or "tty"
    if mode == "shell":
        argv = lxcapi.attach_argv(vmid, [], keep_env=False)
    else:
        argv = [*lxcapi.lxc_base_argv("lxc-console", vmid), "-e", escape]
        if mode == "console":
            argv += ["-t", "0"]
    lxcapi.become(argv)


def mount(vmid: VmidArg) -> None:
    """Mount the stopped container's file systems on the host (lock 'mounted')."""
    from ..ops import mount as mount_ops

    echo(mount_ops.mount(vmid, log_line) + "\n")


def unmount(vmid: VmidArg) -> None:
    """Unmount what pct mount mounted and remove the lock."""
    from ..ops import mount as mount_ops

    mount_ops.unmount(vmid)
