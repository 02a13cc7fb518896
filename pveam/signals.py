"""SIGTERM and SIGHUP end a pveam command the way Ctrl-C does.

Python turns only SIGINT into ``KeyboardInterrupt``; the default action of TERM and HUP kills
the process on the spot (exit 143/129, no message, no ``finally``). Inside
:func:`interruptible` all three raise ``KeyboardInterrupt`` in the main thread, so locks are
released, the progress bar is closed and the partial file is kept for the next run; the
command then exits 130 with one line.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from shared.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Run the body with the handlers installed; a signal becomes :class:`Interrupted`."""
    old = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
