"""Ownership records: which process (pid plus its start time) is doing a long operation.

A record outlives a killed owner; the next command sees the owner is gone (no such pid, or the
pid was reused by a process that started at another time) and may undo or finish the work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import atomic

MAX_RECORD = 1024 * 1024


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])


def me() -> dict[str, int]:
    pid = os.getpid()
    return {"pid": pid, "starttime": start_time(pid) or 0}


def alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    return start_time(pid) == record.get("starttime")


def write(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` plus this process as owner, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps({**data, **me()}, sort_keys=True) + "\n", mode=0o600)


def read(path: Path) -> dict[str, Any] | None:
    """The record, or None when there is none (a corrupt record counts as a dead owner's)."""
    try:
        if path.is_symlink():
            return {}
        with path.open("rb") as fh:
            data = json.loads(fh.read(MAX_RECORD))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
