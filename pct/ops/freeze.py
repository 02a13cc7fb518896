"""``pct suspend`` / ``pct resume``: freeze and thaw a running container's cgroup.

Proxmox's own suspend is an experimental CRIU checkpoint; ctkit freezes the CT in place through
the cgroup freezer (v1 ``freezer.state``, v2 ``cgroup.freeze``), the same mechanism vzdump's
suspend mode uses, so a suspended CT keeps its memory and resumes instantly.
"""

from __future__ import annotations

import time

from shared.ctconfig import store
from shared.errors import StateError
from shared.locks import config_lock
from shared.runtime import lxcapi
from shared.runtime.cgroups import CGroup

THAW_TIMEOUT = 10.0


def running_cgroup(vmid: int, not_running: str | None = None) -> CGroup:
    """The cgroup of a running CT. One whose start has not made it yet (LXC's monitor runs the
    pre-start hook, which waits on an ext4's multi-mount check for up to a minute) counts as
    running: its freezer file was missing, and the command ended in a traceback."""
    if not lxcapi.is_running(vmid):
        raise StateError(not_running or f"CT {vmid} not running")
    cgroup = CGroup(vmid)
    if not cgroup.exists():
        raise StateError(f"CT {vmid} is still starting - try again once it runs")
    return cgroup


def suspend(vmid: int) -> None:
    """Freeze every task of the running CT; a locked CT is refused, as in Proxmox."""
    with config_lock(vmid):
        conf = store.load(vmid)
        cgroup = running_cgroup(vmid)
        store.check_lock(conf)
        if cgroup.is_frozen():
            raise StateError(f"CT {vmid} is already suspended")
        cgroup.freeze()


def resume(vmid: int) -> None:
    """Thaw a suspended CT and wait until the kernel reports it running again."""
    with config_lock(vmid):
        store.load(vmid)
        cgroup = running_cgroup(vmid)
        if not cgroup.is_frozen():
            raise StateError(f"CT {vmid} already running")
        cgroup.thaw()
        deadline = time.monotonic() + THAW_TIMEOUT
        while cgroup.is_frozen():
            if time.monotonic() > deadline:
                raise StateError(f"unable to resume CT {vmid} - still frozen")
            time.sleep(0.005)
