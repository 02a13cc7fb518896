"""The gate of a restic repository: backups share it, an exclusive command waits for the
backups running and goes before the backups that come after it."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from shared.errors import LockError
from shared.resticgate import _files, gate

REPO = "sftp:backup@198.18.0.1:/srv/ct"


def test_an_exclusive_user_waits_for_backups_and_goes_before_later_ones(ctroot: Path) -> None:
    order: list[str] = []
    running = threading.Event()
    release = threading.Event()

    def backup(name: str, hold: threading.Event | None = None) -> None:
        with gate("offsite", REPO, exclusive=False):
            order.append(f"{name} in")
            if hold is not None:
                running.set()
                hold.wait(10)
            order.append(f"{name} out")

    def prune() -> None:
        with gate("offsite", REPO, exclusive=True):
            order.append("prune in")
            time.sleep(0.3)
            order.append("prune out")

    first = threading.Thread(target=backup, args=("first", release))
    first.start()
    assert running.wait(10)
    excl = threading.Thread(target=prune)
    excl.start()
    turn, _lock = _files(REPO)
    deadline = time.monotonic() + 10
    while not _held(turn):  # the prune now waits, holding the turnstile
        assert time.monotonic() < deadline, order
        time.sleep(0.02)
    later = threading.Thread(target=backup, args=("later",))
    later.start()
    time.sleep(0.5)
    assert order == ["first in"]  # neither got in while the first backup runs
    release.set()
    for thread in (first, excl, later):
        thread.join(10)
    assert order == ["first in", "first out", "prune in", "prune out", "later in", "later out"]


def _held(path: Path) -> bool:
    """Whether someone holds the flock on ``path`` (a moment's try of it)."""
    with open(path, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_a_wait_that_ends_is_one_line(ctroot: Path) -> None:
    with gate("offsite", REPO, exclusive=False):
        result: list[BaseException] = []

        def prune() -> None:
            try:
                with gate("offsite", REPO, exclusive=True, wait=0.5):
                    pass
            except LockError as err:
                result.append(err)

        thread = threading.Thread(target=prune)
        thread.start()
        thread.join(10)
    assert [str(e) for e in result] == [
        "restic storage 'offsite': timeout waiting for the repository's other users"
    ]
    with gate("offsite", REPO, exclusive=True, wait=0):  # free again
        pass


def test_other_repositories_do_not_wait(ctroot: Path) -> None:
    with gate("offsite", REPO, exclusive=True), gate("other", REPO + "2", exclusive=True, wait=0):
        pass
    with (
        pytest.raises(LockError),
        gate("a", REPO, exclusive=True),
        gate("b", REPO, exclusive=False, wait=0),
    ):
        pass
