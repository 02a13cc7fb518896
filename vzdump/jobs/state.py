"""Per-job run state: ``<jobs_state_dir>/vzdump-<id>.json`` (spec vzdump §8).

The scheduler moves a job through ``created`` → ``starting`` → ``started`` (with the task's
UPID or PID) → ``stopped`` (with the result message). The keys Proxmox uses (``state``,
``time``, ``upid``, ``msg``, ``updated``) keep their meaning; ``pid``, ``started`` and
``finished`` are ctkit's additions. Writes are atomic, and an update of a job removed meanwhile
(its file gone) writes nothing; a missing or unreadable file reads as a
fresh ``created`` state (:func:`load_state` tells them apart: the scheduler rewrites an
unreadable one as created now), so one bad file never stops the scheduler. Times are accepted
only as epoch seconds from 1970 to the end of 9999 (the last a date can hold) and PIDs only up
to the kernel's limit: anything else (``Infinity``, ``1e300``, negative) is malformed, since
``datetime.fromtimestamp`` of it would raise in every pass. A bound any lower is one the
scheduler's own clock can pass (a hardware clock reset to garbage): every state it wrote would
read as malformed, and each job would run in every pass.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time as _time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from shared import atomic, paths
from shared.formats.types import check_configid
from shared.regularfile import UnreadableFile, read_whole

STATES = ("created", "starting", "started", "stopped")
EPOCH_MAX = 253402300799  # 9999-12-31 23:59:59 UTC
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT
# A last runtime up to a day ahead of now is honoured, as Proxmox always does: the clock was set
# back since that run (an NTP step after a boot with a wrong hardware clock), and counting from
# now would run the same night's job again. Further ahead, the clock was wrong during that run:
# waiting for it could stop the job for years, so the next event counts from now.
CLOCK_STEP_BACK = 86400
_LIMITS = {"pid": (1, PID_MAX)}  # every other int field is an epoch time


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

    def from_future(self, now: int) -> bool:
        """Does the last runtime lie more than :data:`CLOCK_STEP_BACK` ahead of ``now``? (the
        clock was wrong during that run): the next event would not come until then."""
        return self.last_runtime() > now + CLOCK_STEP_BACK

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_data(cls, data: Any) -> JobState | None:
        """Build from decoded JSON; None when anything is malformed or out of range."""
        if not isinstance(data, dict) or data.get("state") not in STATES:
            return None
        kinds = {"state": str, "upid": str, "msg": str}
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            wanted = kinds.get(f.name, int)
            if wanted is int and isinstance(value, float):
                if not math.isfinite(value):  # int() of them raises OverflowError/ValueError
                    return None
                value = int(value)  # Proxmox writes some times as floats
            if not isinstance(value, wanted) or isinstance(value, bool):
                return None
            if isinstance(value, int) and not _in_range(f.name, value):
                return None
            values[f.name] = value
        return cls(**values)


def _in_range(name: str, value: int) -> bool:
    low, high = _LIMITS.get(name, (0, EPOCH_MAX))
    return low <= value <= high


MAX_STATE = 1 << 20  # a job's state is a few hundred bytes


def state_path(job_id: str) -> Path:
    check_configid(job_id)  # job IDs never contain '/' or start with '.'
    return paths.jobs_state_dir() / f"vzdump-{job_id}.json"


def load_state(job_id: str) -> JobState | None:
    """The state on disk; None when the file is missing, unreadable or malformed."""
    try:
        raw = read_whole(state_path(job_id), MAX_STATE).decode("utf-8")
        return JobState.from_data(json.loads(raw))
    # RecursionError: JSON nested too deep; UnreadableFile: a FIFO (it waited for ever), a
    # directory
    except (OSError, UnreadableFile, ValueError, RecursionError):
        return None


def read_state(job_id: str) -> JobState:
    """The state, or the default ``created`` one when there is none that can be read."""
    return load_state(job_id) or JobState()


def write_state(job_id: str, state: JobState) -> None:
    atomic.write_text(state_path(job_id), state.to_json() + "\n")


def _save(job_id: str, state: JobState) -> None:
    """Write an update of a job's state, unless the job was removed meanwhile (its file is
    gone), as Proxmox's job state does: a run that ends after ``job remove`` wrote a state
    back, and the ID added again later found a last run and started off its schedule."""
    if os.path.lexists(state_path(job_id)):
        write_state(job_id, state)


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
    _save(job_id, state)
    return state


def mark_started(
    job_id: str, upid: str | None = None, pid: int | None = None, now: float | None = None
) -> JobState:
    """A run began: a new run replaces the previous result and any ``updated`` mark."""
    start = _now(now)
    state = JobState(state="started", time=start, upid=upid, pid=pid, started=start)
    _save(job_id, state)
    return state


def mark_stopped(job_id: str, msg: str, now: float | None = None) -> JobState:
    """The run ended (or failed to start) with result ``msg``."""
    state = read_state(job_id)
    end = _now(now)
    state.state, state.msg, state.finished = "stopped", msg, end
    if state.started is None:
        state.time = end
    _save(job_id, state)
    return state


def mark_updated(job_id: str, now: float | None = None) -> JobState:
    """Schedule/enabled changed (or missed runs are skipped): count from now."""
    state = read_state(job_id)
    state.updated = _now(now)
    _save(job_id, state)
    return state


def remove_state(job_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(job_id).unlink()


__all__ = [
    "CLOCK_STEP_BACK",
    "EPOCH_MAX",
    "STATES",
    "JobState",
    "create_state",
    "load_state",
    "mark_started",
    "mark_starting",
    "mark_stopped",
    "mark_updated",
    "read_state",
    "remove_state",
    "state_path",
    "write_state",
]
