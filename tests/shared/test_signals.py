"""INT, TERM, HUP and QUIT during a long operation: one interrupt, never inside held cleanup."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from shared import signals


@pytest.mark.parametrize("sig", signals.INTERRUPTS, ids=str)
def test_first_signal_interrupts_later_ones_are_ignored(sig: signal.Signals) -> None:
    with signals.interruptible():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            signals.raise_if_interrupted()  # (not reached when the handler raised)
        os.kill(os.getpid(), sig)  # ignored: cleanup after the first one must not be cut short
        assert signals.interrupted()
    assert not signals.interrupted()  # the next operation starts afresh
    assert signal.getsignal(sig) is not signals._handler


def test_signal_in_held_work_is_noted_and_raised_after_it() -> None:
    done = []
    with signals.interruptible():
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("held work completed")
        assert done and signals.interrupted()
        with pytest.raises(KeyboardInterrupt):
            signals.raise_if_interrupted()


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[object] = []

    def run() -> None:
        with signals.interruptible():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]
