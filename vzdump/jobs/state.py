"""Per-job run state: ``<jobs_state_dir>/vzdump-<id>.json`` (spec vzdump §8).

The scheduler moves a job through ``created`` → ``starting`` → ``started`` (with the task's
UPID or PID) → ``stopped`` (with the result message). The keys Proxmox uses (``state``,
``time``, ``upid``, ``msg``, ``updated``) keep their meaning; ``pid``, ``started`` and
``finished`` are ctkit's additions. Writes are atomic; a missing or unreadable file reads as a
fresh ``created`` state, so one bad file never stops the scheduler.
"""

from __future__ import annotations

import contextlib
import json
import time as _time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from shared import atomic, paths
from shared.formats.types import check_configid

STATES = ("created", "starting", "started", "stopped")


@dataclass
class JobState:
    state: str = "created"
    time: int = 0  # when the current state was entered (created, starting, failed start)
    upid: str | None = None
    pid: int | None = None
    started: int | None = None  # start of the last run
    finished: int | None = None  # end of the last run
    msg: str | None = None  # result of the last run, e.g. "OK" or "job errors"
    updated: int | None = None  # schedule/enabled last changed, or missed runs skipped

    def last_runtime(self) -> int:
        """What the next event is computed from: a later config change, else the last start."""
        if self.updated is not None:
            return self.updated
        if self.started is not None:
            return self.started
        return self.time

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_data(cls, data: Any) -> JobState:
        """Build from decoded JSON; anything malformed gives the default state."""
        if not isinstance(data, dict) or data.get("state") not in STATES:
            return cls()
        kinds = {"state": str, "upid": str, "msg": str}
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            wanted = kinds.get(f.name, int)
            if wanted is int and isinstance(value, float):
                value = int(value)
            if not isinstance(value, wanted) or isinstance(value, bool):
                return cls()
            values[f.name] = value
        return cls(**values)


def state_path(job_id: str) -> Path:
    check_configid(job_id)  # job IDs never contain '/' or start with '.'
    return paths.jobs_state_dir() / f"vzdump-{job_id}.json"


def read_state(job_id: str) -> JobState:
    try:
        raw = state_path(job_id).read_text(encoding="utf-8")
        return JobState.from_data(json.loads(raw))
    except (OSError, ValueError):
        return JobState()


def write_state(job_id: str, state: JobState) -> None:
    atomic.write_text(state_path(job_id), state.to_json() + "\n")


def _now(now: float | None) -> int:
    return int(_time.time() if now is None else now)


def create_state(job_id: str, now: float | None = None) -> JobState:
    """A new job: ``created``, with the creation time as its last runtime."""
    state = JobState(state="created", time=_now(now))
    write_state(job_id, state)
    return state


def mark_starting(job_id: str, now: float | None = None) -> JobState:
    state = read_state(job_id)
    state.state, state.time = "starting", _now(now)
    write_state(job_id, state)
    return state


def mark_started(
    job_id: str, upid: str | None = None, pid: int | None = None, now: float | None = None
) -> JobState:
    """A run began: a new run replaces the previous result and any ``updated`` mark."""
    start = _now(now)
    state = JobState(state="started", time=start, upid=upid, pid=pid, started=start)
    write_state(job_id, state)
    return state


def mark_stopped(job_id: str, msg: str, now: float | None = None) -> JobState:
    """The run ended (or failed to start) with result ``msg``."""
    state = read_state(job_id)
    end = _now(now)
    state.state, state.msg, state.finished = "stopped", msg, end
    if state.started is None:
        state.time = end
    write_state(job_id, state)
    return state


def mark_updated(job_id: str, now: float | None = None) -> JobState:
    """Schedule/enabled changed (or missed runs are skipped): count from now."""
    state = read_state(job_id)
    state.updated = _now(now)
    write_state(job_id, state)
    return state


def remove_state(job_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(job_id).unlink()


__all__ = [
    "STATES",
    "JobState",
    "create_state",
    "mark_started",
    "mark_starting",
    "mark_stopped",
    "mark_updated",
    "read_state",
    "remove_state",
    "state_path",
    "write_state",
]
