"""``jobs.cfg`` transactions: the one way to change the file.

Two programs edit jobs.cfg - ``vzdump job ...`` and ``pct destroy --purge`` - and a
read-modify-write that does not hold the lock loses whatever the other wrote meanwhile. Every
writer therefore reads, edits and atomically replaces the file inside :func:`transaction`.
It works on text, so pct can use it without vzdump's job schema.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import atomic, locks, paths
from .formats.lines import read_config_text

LOCK_TIMEOUT = 10.0
_held = threading.local()  # the transaction this thread is in, so nesting does not self-deadlock

# root's alone, as /etc/pve's files are Proxmox's cluster's (0640, and no group here): a job
# may hold a webhook's credentials (notify-webhook https://user:secret@...)
MODE = 0o640


def keep_private(path: Path) -> None:
    """A jobs.cfg written before it was kept 0640 (any user read its webhook credentials) is
    made so when it is read (the scheduler reads it every minute)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o037 and st.st_uid == os.geteuid():
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & MODE)
        finally:
            os.close(fd)


def lock_path() -> Path:
    return paths.run_dir() / "jobs-cfg.lock"


@dataclass
class JobsFile:
    """jobs.cfg inside a transaction: read it, replace it."""

    path: Path

    def read(self) -> str:
        """The current text; a missing file reads as empty."""
        try:
            return read_config_text(self.path, self.path.name)
        except FileNotFoundError:
            return ""

    def write(self, text: str) -> None:
        atomic.write_text(self.path, text, mode=MODE)


@contextlib.contextmanager
def transaction() -> Iterator[JobsFile]:
    """Hold the jobs.cfg lock for one read-modify-write (reentrant within a thread)."""
    current: JobsFile | None = getattr(_held, "file", None)
    if current is not None:
        yield current
        return
    with locks.flock(lock_path(), LOCK_TIMEOUT):
        _held.file = JobsFile(paths.jobs_cfg())
        try:
            yield _held.file
        finally:
            _held.file = None
