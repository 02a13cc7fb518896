"""Signals during a backup job (spec vzdump §1.4, §6, §7).

INT, TERM, HUP and QUIT interrupt the job once: the first one raises ``KeyboardInterrupt`` (the
guest fails with ``interrupted by signal``, its cleanup runs, the job aborts and the remaining
guests are reported as aborted). Cleanup code runs inside :func:`held`: a signal that arrives
there is only noted, so a container is always thawed or restarted, its snapshot removed, its
volumes unmounted and its lock dropped; the job stops after the guest. Later signals are ignored
for the same reason (``vzdump --stop`` or an impatient second Ctrl-C must not break cleanup).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class _State:
    def __init__(self) -> None:
        self.fired = False
        self.held = 0


_state = _State()


def _handler(_signum: int, _frame: FrameType | None) -> None:
    if _state.fired:
        return
    _state.fired = True
    if not _state.held:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Install the handlers for the duration of the job (main thread only)."""
    old = {sig: signal.signal(sig, _handler) for sig in INTERRUPTS}
    _state.fired, _state.held = False, 0
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Cleanup that must not be cut short: a signal now only marks the job interrupted."""
    _state.held += 1
    try:
        yield
    finally:
        _state.held -= 1


def interrupted() -> bool:
    """Whether a signal arrived since the job started (also one noted during cleanup)."""
    return _state.fired
