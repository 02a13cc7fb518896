"""A bound on a transfer that trickles: the read timeout bounds each wait for data, so a server
that sends a byte now and then, just inside it, could hold a download (and the lock it runs
under) for days. The guard watches the reads from a thread of its own; when no read has
completed for ``limit`` seconds it acts (for a socket: shuts it down, which ends the blocked
read, and the transfer fails as a stalled one and is retried, resuming, like a dropped
connection; for a child such as restic: stops it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType


def shut_down(sock: socket.socket | None) -> Callable[[], None] | None:
    """What a guard does to a stalled socket (None: there is none to watch)."""
    if sock is None:
        return None

    def act() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    return act


# A transfer that trickles (a byte now and then, inside the read timeout) is given up when it
# brought no SUB_READ bytes for this long (or four read timeouts, if longer): about 1 KiB/s at
# least; its headers, when they took this long as a whole.
STALL_LIMIT = 60.0


class StallGuard:
    """``until``: a time (``time.monotonic``) after which the guard acts whatever the pace: a
    transfer that must end by then (one just fast enough not to stall can still take hours)."""

    def __init__(
        self, on_stall: Callable[[], None] | None, limit: float, until: float | None = None
    ) -> None:
        self.on_stall, self.limit, self.until = on_stall, limit, until
        self.fired = False
        self.overdue = False  # it acted because ``until`` had passed
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StallGuard:
        if self.on_stall is not None:
            self._thread = threading.Thread(target=self._watch, name="stall-guard", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def progress(self) -> None:
        """A read completed (called by the reading thread; one store, no lock)."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        assert self.on_stall is not None
        while not self._done.wait(self._pause()):
            now = time.monotonic()
            self.overdue = self.until is not None and now > self.until
            if now - self._last > self.limit or self.overdue:
                self.fired = True
                self.on_stall()
                return

    def _pause(self) -> float:
        pause = min(self.limit / 4, 5.0)
        if self.until is not None:
            pause = min(pause, max(self.until - time.monotonic(), 0.0) + 0.01)
        return pause
