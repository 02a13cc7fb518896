"""A call that must not hang (a read that would wait on a FIFO for ever): the test fails after a
bound instead of holding the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def returns_within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result, run in a daemon thread; AssertionError if it takes longer."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"still waiting after {seconds:g} s"
    return result[0]
