"""The outcome of one vzdump run, as the backup engine fills it in (spec vzdump §6).

The notification (:mod:`vzdump.notify`) and the job scheduler read these; neither needs the
engine itself. ``to_json()`` gives a stable schema (``version`` 1), keys in this order::

    JobResult  {"version": 1, "job-id": str|null, "cmdline": str,
                "started": int, "finished": int, "duration": int,   # epoch s, epoch s, s
                "status": "ok"|"failed", "error": str|null,
                "total-size": int,                                  # bytes of the ok guests
                "guests": [GuestResult...],
                "job-log": [str...], "job-log-end": [str...]}       # omitted with logs=False
    GuestResult {"vmid": int, "name": str, "status": "ok"|"err", "seconds": int,
                 "started": int|null, "finished": int|null,          # epoch s
                 "size": int|null, "filename": str|null, "error": str|null,
                 "log": [str...]}                                   # omitted with logs=False

Times are whole seconds (rounded). New keys may be added in later versions; existing keys keep
their meaning and type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
GUEST_STATUSES = ("ok", "err")


# The logs part of a notification mail, at most; a longer one is replaced by a line saying so
MAX_LOG_SIZE = 1024 * 1024


@dataclass
class GuestResult:
    """One guest of a job. ``seconds`` is its backup time; ``size``/``filename`` describe the
    archive (None when it failed); ``log_lines`` are its log lines as written to its log file."""

    vmid: int
    name: str
    status: str
    seconds: float
    size: int | None = None
    filename: str | None = None
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)
    # epoch seconds; None for a guest that never started (aborted before its turn)
    started: float | None = None
    finished: float | None = None

    def __post_init__(self) -> None:
        if self.status not in GUEST_STATUSES:
            raise ValueError(f"guest status must be 'ok' or 'err', not {self.status!r}")

    @classmethod
    def aborted(cls, vmid: int) -> GuestResult:
        """A guest of a job that a signal ended before the guest's turn came."""
        return cls(vmid=vmid, name=f"CT{vmid}", status="err", seconds=0.0, error="aborted")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, *, logs: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "vmid": self.vmid,
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds),
            "started": round(self.started) if self.started is not None else None,
            "finished": round(self.finished) if self.finished is not None else None,
            "size": self.size,
            "filename": self.filename,
            "error": self.error,
        }
        if logs:
            data["log"] = list(self.log_lines)
        return data


@dataclass
class JobResult:
    """One vzdump run (a scheduled job or an ad-hoc command line).

    ``started``/``finished`` are epoch seconds. ``job_log`` holds the job-level lines that come
    before the guests (job header, job-init/job-start hook output); ``job_log_end`` those after
    them (job-end hook output, the closing line). ``error`` is a job-level failure (setup
    errors, a failing job hook, a signal); several problems are separated by newlines.
    """

    job_id: str | None
    cmdline: str
    started: float
    finished: float
    guests: list[GuestResult] = field(default_factory=list)
    job_log: list[str] = field(default_factory=list)
    error: str | None = None
    job_log_end: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No guest failed and the job itself did not fail."""
        return self.error is None and all(g.ok for g in self.guests)

    @property
    def duration(self) -> float:
        return max(self.finished - self.started, 0.0)

    @property
    def total_size(self) -> int:
        """Bytes written by the guests that succeeded."""
        return sum(g.size or 0 for g in self.guests if g.ok)

    def to_dict(self, *, logs: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "job-id": self.job_id,
            "cmdline": self.cmdline,
            "started": round(self.started),
            "finished": round(self.finished),
            "duration": round(self.duration),
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "total-size": self.total_size,
            "guests": [g.to_dict(logs=logs) for g in self.guests],
        }
        if logs:
            data["job-log"] = list(self.job_log)
            data["job-log-end"] = list(self.job_log_end)
        return data

    def to_json(self, *, logs: bool = True) -> str:
        return json.dumps(self.to_dict(logs=logs), indent=2, ensure_ascii=False) + "\n"


__all__ = ["GUEST_STATUSES", "SCHEMA_VERSION", "GuestResult", "JobResult"]
