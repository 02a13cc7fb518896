"""This host's users of one restic repository, in turn.

restic locks a repository itself, but a command that needs it alone (forget, prune, tag) fails
at once while any backup holds a lock, and restic 0.14 cannot wait. Within this host the
users queue here instead: a backup holds the gate shared, an exclusive command holds it alone.
An exclusive command waiting keeps the turnstile, so backups that come later queue behind it:
the retention of a parallel backup run waits for the backups already running, not forever.
Locks of other hosts are still restic's, and :func:`shared.restic.run_exclusive` waits for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import paths, signals
from .errors import LockError
from .locks import flock

POLL = 0.2
WAIT = 3 * 3600.0  # as long as vzdump's default lockwait: a first backup can take hours


def _files(repository: str) -> tuple[Path, Path]:
    key = hashlib.sha256(repository.encode("utf-8")).hexdigest()[:20]
    base = paths.under("run/lock/ctkit")
    return base / f"restic-{key}.turn", base / f"restic-{key}.lock"


@contextlib.contextmanager
def _hold(
    path: Path, *, exclusive: bool, deadline: float, message: str, on_wait: str = ""
) -> Iterator[None]:
    """The flock, waited for in short steps so that a signal to a worker thread ends the
    wait (the handler only notes it there)."""
    with contextlib.ExitStack() as stack:
        while True:
            signals.raise_if_interrupted()
            try:
                stack.enter_context(flock(path, 0, exclusive=exclusive, timeout_message=message))
                break
            except LockError:
                if time.monotonic() >= deadline:
                    raise
                if on_wait:
                    print(on_wait, file=sys.stderr)
                    on_wait = ""
                time.sleep(POLL)
        yield


@contextlib.contextmanager
def gate(storage: str, repository: str, *, exclusive: bool, wait: float = WAIT) -> Iterator[None]:
    turn, lock = _files(repository)
    deadline = time.monotonic() + wait
    message = f"restic storage '{storage}': timeout waiting for the repository's other users"
    if not exclusive:
        with _hold(turn, exclusive=True, deadline=deadline, message=message):
            pass  # past the turnstile: no exclusive user is waiting
        with _hold(lock, exclusive=False, deadline=deadline, message=message):
            yield
        return
    waiting = f"restic storage '{storage}': waiting for the backups using it"
    with (
        _hold(turn, exclusive=True, deadline=deadline, message=message),
        _hold(lock, exclusive=True, deadline=deadline, message=message, on_wait=waiting),
    ):
        yield
