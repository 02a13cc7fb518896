"""``pct snapshot``, ``listsnapshot``, ``delsnapshot`` and ``rollback`` (spec pct.md §5, §8).

The work itself is :mod:`shared.runtime.snapshot` (vzdump's snapshot mode uses it too); this
module adds what the commands show: the snapshot listing and the warnings of a forced delete.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from shared.ctconfig import store
from shared.ctconfig.render import render_snapshot_tree, snapshot_list
from shared.runtime import lxcapi, recovery
from shared.runtime import snapshot as ctsnapshot

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def create(vmid: int, name: str, *, description: str | None = None, log: Log = _stderr) -> None:
    """Take snapshot ``name`` of every volume (a running CT is frozen for the instant)."""
    # what a killed operation left (a frozen CT, a half-made snapshot) is undone first: the
    # owner record this snapshot writes would otherwise replace the dead one's
    recovery.recover(vmid, log)
    ctsnapshot.create(vmid, name, description=description, log=log)


def delete(vmid: int, name: str, *, force: bool = False, log: Log = _stderr) -> None:
    """Delete snapshot ``name``; with ``force`` storage failures are only warned about."""
    recovery.recover(vmid, log)  # as create: a dead owner's record is undone, not replaced
    for problem in ctsnapshot.delete(vmid, name, force=force):
        log(problem)


def rollback(vmid: int, name: str, *, start: bool = False, log: Log = _stderr) -> None:
    """Roll back to ``name`` (a running CT is stopped first); ``start`` starts it afterwards."""
    recovery.recover(vmid, log)
    ctsnapshot.rollback(vmid, name, start=start, log=log)


def listing(vmid: int) -> list[dict[str, Any]]:
    """The snapshots as Proxmox's API lists them, the pseudo entry ``current`` last."""
    conf = store.load(vmid)
    return snapshot_list(conf, running=lxcapi.is_running(vmid))


def render(entries: list[dict[str, Any]]) -> str:
    """The tree ``pct listsnapshot`` prints."""
    return render_snapshot_tree(entries)
