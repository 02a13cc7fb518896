"""``pct restore-test <volume>``: restore a backup into a throwaway container, start it,
optionally run a check inside, destroy it (``pct.ops.restoretest``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..ops.vmidrange import DEFAULT_RANGE, parse_range
from .common import log_line


def register(app: typer.Typer) -> None:
    app.command("restore-test")(restore_test_cmd)


def restore_test_cmd(
    volume: Annotated[str, typer.Argument(metavar="volume")],
    storage: Annotated[str, typer.Option(help="Storage for the throwaway CT.")] = "local",
    vmid_range: Annotated[
        str, typer.Option("--vmid-range", help="Where the throwaway CT's id is taken from.")
    ] = f"{DEFAULT_RANGE[0]}-{DEFAULT_RANGE[1]}",
    check: Annotated[
        str | None, typer.Option(help="Shell command run inside; must exit 0.")
    ] = None,
    timeout: Annotated[int, typer.Option(min=1, help="Seconds to reach 'running'.")] = 60,
) -> None:
    """Prove a backup restores: restore it as a throwaway CT, start it, check, destroy it."""
    from ..ops.restoretest import RestoreTest, restore_test

    test = RestoreTest(
        volid=volume,
        storage=storage,
        vmid_range=parse_range(vmid_range),
        check=["/bin/sh", "-c", check] if check else None,
        timeout=float(timeout),
    )
    restore_test(test, log=log_line)
