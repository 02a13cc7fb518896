"""A container's run state as ``pct status``/``list`` show it: running, frozen or stopped."""

from __future__ import annotations

from . import lxcapi
from .cgroups import CGroup


def run_status(vmid: int) -> str:
    """``frozen`` for a running container whose cgroup is frozen (a backup's suspend window, a
    killed backup, ``pct suspend``): it answers nothing, so ``running`` would mislead."""
    if not lxcapi.is_running(vmid):
        return "stopped"
    cgroup = CGroup(vmid)
    try:
        if cgroup.exists() and cgroup.is_frozen():
            return "frozen"
    except OSError:
        pass  # gone between the checks: it is not frozen
    return "running"
