"""File locks (flock with a timeout) and the container config ``lock:`` property.

Every mutating container operation holds the per-container lock
``run/lock/lxc/pve-config-<vmid>.lock`` (10 s by default, 5 s for create, as Proxmox) and re-reads
the config inside it. Global locks (vzdump's node lock, pveam downloads) use the same helper.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import paths, signals
from .errors import LockError

POLL_INTERVAL = 0.05


def _try_flock(fd: int, exclusive: bool) -> bool:
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    try:
        fcntl.flock(fd, op)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


@contextlib.contextmanager
def flock(
    path: Path,
    timeout: float,
    *,
    exclusive: bool = True,
    timeout_message: str | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold an flock on ``path`` (created if missing) or raise LockError after ``timeout`` s.

    ``on_wait`` is called once when the lock is busy and we start waiting.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:  # a read-only or full file system: one line, not a traceback
        raise LockError(f"can't lock file '{path}' - {err.strerror or err}") from None
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while not _try_flock(fd, exclusive):
            if timeout <= 0 or time.monotonic() >= deadline:
                msg = timeout_message or f"can't lock file '{path}' - got timeout"
                raise LockError(msg)
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(POLL_INTERVAL)
            # a thread other than the main one acts on a signal only where it looks: here it
            # waited out the lock's whole timeout
            signals.raise_if_interrupted()
        yield
    finally:
        os.close(fd)


def config_lock(vmid: int, timeout: float = 10) -> contextlib.AbstractContextManager[None]:
    """The per-container lock Proxmox takes around every config read-modify-write."""
    return flock(paths.config_lock(vmid), timeout)


def check_lock_value(lock: str | None) -> None:
    """Raise ``CT is locked (<value>)`` when the config carries a ``lock:`` property."""
    if lock:
        raise LockError(f"CT is locked ({lock})")
