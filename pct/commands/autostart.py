"""pct startall, stopall and ``pct autostart install|remove`` (the ctkit-guests.service unit)."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from shared import paths
from shared.cli import new_app
from shared.errors import CtkitError, Interrupted, ParamError
from shared.formats.types import FormatError, parse_vmid
from shared.tasklog import TaskLog

from .common import echo

DEFAULT_STOP_TIMEOUT = 180  # Proxmox's stopall default, for containers without 'down'

units_app = new_app(
    "Install or remove ctkit-guests.service (startall at boot, stopall at shutdown)."
)


def register(app: typer.Typer) -> None:
    app.command("startall")(startall)
    app.command("stopall")(stopall)
    app.add_typer(units_app, name="autostart")


def _vms(raw: list[str] | None) -> list[int] | None:
    """The ``--vms`` lists, all of them when the option is repeated (as Proxmox joins them)."""
    if raw is None:
        return None
    try:
        return [parse_vmid(w) for w in re.split(r"[,;\s]+", ",".join(raw).strip()) if w]
    except FormatError as err:
        raise ParamError({"vms": str(err)}) from None


@contextlib.contextmanager
def _guests_task(command: str) -> Iterator[TaskLog]:
    """The run's task log: guests.log, appended, gets a line as it begins and one saying how it
    ended (Proxmox's ``TASK OK`` or ``TASK ERROR: <why>``), which the console had alone: a boot
    run killed during an ``up`` delay looked like one still waiting."""
    log = TaskLog(sys.stderr)
    log.attach_or_warn(paths.guests_log(), "a")  # a full /var/log starts the guests all the same
    log.record(f"pct {command}")
    try:
        yield log
    except CtkitError as err:
        log.record(f"TASK ERROR: {err.message}")
        raise
    except KeyboardInterrupt:
        log.record(f"TASK ERROR: {Interrupted().message}")
        raise
    else:
        log.record("TASK OK")
    finally:
        log.close()


VmsOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="<str>",
        help="Only consider containers from this comma separated VMID list (may be repeated).",
    ),
]


def startall(
    force: Annotated[
        bool | None,
        typer.Option(help="Start even containers that do not have 'onboot' set."),
    ] = None,
    vms: VmsOpt = None,
) -> None:
    """Start all containers with onboot=1, by their startup order and delays."""
    from ..ops import autostart  # imported when used: pct starts fast

    vmids = _vms(vms)
    with _guests_task("startall") as log:
        autostart.startall(log, force=bool(force), vms=vmids)


def stopall(
    vms: VmsOpt = None,
    timeout: Annotated[
        int, typer.Option(min=0, max=7200, help="Shutdown timeout per container without 'down'.")
    ] = DEFAULT_STOP_TIMEOUT,
    force_stop: Annotated[
        bool, typer.Option("--force-stop/--no-force-stop", help="Hard-stop after the timeout.")
    ] = True,
    max_workers: Annotated[
        int | None,
        typer.Option("--max-workers", min=1, max=64, help="Containers shut down at once."),
    ] = None,
) -> None:
    """Shut down all running containers in reverse startup order (hard stop after 'down')."""
    from ..ops import autostart

    vmids = _vms(vms)
    with _guests_task("stopall") as log:
        autostart.stopall(
            log, vms=vmids, timeout=timeout, force_stop=force_stop, max_workers=max_workers
        )


@units_app.command("install")
def install(
    enable: Annotated[
        bool, typer.Option("--enable/--no-enable", help="Enable the unit at boot (1).")
    ] = True,
) -> None:
    """Write ctkit-guests.service, check it with systemd-analyze and enable it."""
    from shared import systemd

    written = systemd.install_units(
        (systemd.GUESTS_UNIT,),
        exec_path=systemd.find_program("pct"),
        enable=enable,
        verify=True,  # before it is enabled
        log=lambda m: print(m, file=sys.stderr),
    )
    for path in written:
        echo(f"wrote {path}\n")


@units_app.command("remove")
def remove() -> None:
    """Disable ctkit-guests.service and delete it."""
    from shared import systemd

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    for path in systemd.remove_units((systemd.GUESTS_UNIT,), log=log):
        echo(f"removed {path}\n")
