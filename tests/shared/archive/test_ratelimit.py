"""The token bucket, on a fake clock and on the real one."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from shared.archive.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=500, clock=clock, sleep=clock.sleep)
    bucket.consume(500)  # the burst is free
    assert clock.slept == []
    bucket.consume(1000)  # a full second's worth must wait a second
    assert clock.slept == [pytest.approx(1.0)]
    clock.now += 0.25  # idle time refills, up to the burst
    bucket.consume(250)
    assert clock.slept == [pytest.approx(1.0)]


def test_long_run_rate_is_limited() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1 << 20, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        bucket.consume(1 << 20)
    assert clock.now == pytest.approx(100 - bucket.burst / (1 << 20), rel=1e-6)


def test_from_kib_and_chunks() -> None:
    assert TokenBucket.from_kib(None) is None and TokenBucket.from_kib(0) is None
    bucket = TokenBucket.from_kib(1024)
    assert bucket is not None and bucket.rate == 1024 * 1024
    assert bucket.chunk_size(1 << 20) == 131072
    assert TokenBucket(100).chunk_size(1 << 20) == 4096
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_real_clock() -> None:
    bucket = TokenBucket(200_000, burst=10_000)
    start = time.monotonic()
    for _ in range(10):
        bucket.consume(10_000)
    assert time.monotonic() - start >= 0.4


def test_shared_by_threads_limits_the_total() -> None:
    """Several threads drawing from one bucket (parallel backups) get the rate between them."""
    bucket = TokenBucket(400_000, burst=10_000)

    def worker() -> None:
        for _ in range(10):
            bucket.consume(10_000)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    assert (400_000 - 10_000) / 400_000 <= elapsed < 5.0  # about 1 s; a loaded host adds


def _forked(work: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def test_shared_by_forked_processes_limits_the_total() -> None:
    """A ``shared`` bucket holds across the processes forked after it was made (a parallel
    backup's workers): four of them get the rate between them, not four times it."""
    bucket = TokenBucket(400_000, burst=10_000, shared=True)

    def worker() -> None:
        for _ in range(10):
            bucket.consume(10_000)

    start = time.monotonic()
    pids = [_forked(worker) for _ in range(4)]
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    elapsed = time.monotonic() - start
    assert (400_000 - 10_000) / 400_000 <= elapsed < 5.0  # about 1 s; a loaded host adds


def test_a_killed_holder_does_not_stall_the_others() -> None:
    """The shared line's lock goes with a process killed while holding it."""
    bucket = TokenBucket(400_000, burst=10_000, shared=True)
    shared = bucket._shared
    assert shared is not None
    ready = os.pipe()

    def hold_forever() -> None:
        with shared.locked():
            os.write(ready[1], b"x")
            time.sleep(60)

    pid = _forked(hold_forever)
    assert os.read(ready[0], 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    start = time.monotonic()
    bucket.consume(1000)
    assert time.monotonic() - start < 1.0
