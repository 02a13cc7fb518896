"""TERM, HUP and QUIT interrupt like Ctrl-C while a backup operation runs, so its cleanup
(a throwaway container destroyed, a half-filled target removed) runs on those signals too."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """The first of :data:`SIGNALS` raises KeyboardInterrupt; later ones are ignored, so the
    cleanup it starts is not cut short. Main thread only."""
    fired = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
