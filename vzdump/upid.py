"""Proxmox-style task IDs (UPIDs) of vzdump runs, and the process one names.

A UPID carries the PID and the process start time of its run, so a PID reused by another
process is never taken for the run. A backup writes its UPID into the pid file (``--stop``
reads it), the scheduler into the job state (a later pass checks it). Kept apart from the
scheduler: a backup run loads this, not the scheduler's calendar and job files.
"""

from __future__ import annotations

import re

from shared import paths
from shared.owner import process_start

# the start time takes more than 8 hex digits after 2106 (Proxmox's "%08X" writes them all)
UPID_RE = re.compile(r"UPID:[^:]+:([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):[0-9A-Fa-f]{8,10}:")


def make_upid(pid: int, job_id: str, started: int, node: str | None = None) -> str:
    """A Proxmox-style task ID; its process start time guards against PID reuse."""
    pstart = process_start(pid) or 0
    node = node or paths.node_name()
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{started:08X}:vzdump:{job_id}:root@pam:"


def named_process(upid: str) -> tuple[int, int] | None:
    """The PID and process start time that ``upid`` names; None for text that is no UPID, or
    one written without a start time (which would trust whatever process has the PID now)."""
    match = UPID_RE.match(upid)
    if match is None:
        return None
    pid, pstart = int(match.group(1), 16), int(match.group(2), 16)
    return (pid, pstart) if pstart else None


def lives(pid: int, pstart: int) -> bool:
    """Is the process ``pid`` that started at ``pstart`` still running?"""
    return process_start(pid) == pstart
