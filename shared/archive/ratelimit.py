"""An in-process bandwidth limit (what ``cstream -t`` does in Proxmox's pipelines).

A token bucket: tokens accrue at ``rate`` bytes per second up to ``burst``; consuming more than
is available sleeps for the deficit. Consumption may exceed the burst (one large chunk), which
is paid back by sleeping, so the long-run rate never exceeds the limit.

One bucket may be shared by several threads, and a ``shared`` one also by the processes forked
after it was made (a parallel backup's workers: ``--bwlimit`` is the total of the run). Each
consumer reserves its bytes on one virtual time line under a lock and sleeps outside it, so
together they never exceed ``rate`` plus one ``burst``.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _SharedLine:
    """The time line in memory that every process forked after it shares. Its lock is a POSIX
    record lock: held per process (so threads also take the bucket's own lock), and let go by
    the kernel when a holder dies, so a killed worker never stalls the others."""

    def __init__(self, start: float) -> None:
        self._fd = os.memfd_create("ctkit-bwlimit", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, 8)
        self._map = mmap.mmap(self._fd, 8)
        self.set(start)

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def get(self) -> float:
        return float(struct.unpack_from("d", self._map)[0])

    def set(self, value: float) -> None:
        struct.pack_into("d", self._map, 0, value)


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shared: bool = False,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # A quarter second of traffic smooths the pipe without allowing noticeable bursts.
        self.burst = float(burst) if burst is not None else max(self.rate / 4, 4096.0)
        self._clock = clock
        self._sleep = sleep
        # when the bytes reserved so far are paid for; a full bucket is "now"
        self._paid_until = clock()
        self._lock = threading.Lock()
        self._shared = _SharedLine(self._paid_until) if shared else None

    @classmethod
    def from_kib(cls, kib_per_s: int | float | None, *, shared: bool = False) -> TokenBucket | None:
        """Proxmox's ``bwlimit`` (KiB/s); None or 0 means unlimited."""
        if not kib_per_s:
            return None
        return cls(float(kib_per_s) * 1024, shared=shared)

    def chunk_size(self, maximum: int) -> int:
        """A read size that keeps the stream smooth: at most an eighth of a second's worth."""
        return max(4096, min(maximum, int(self.rate / 8)))

    def consume(self, nbytes: int) -> None:
        with self._lock:
            if self._shared is None:
                wait = self._reserve(nbytes)
            else:
                with self._shared.locked():
                    self._paid_until = self._shared.get()
                    wait = self._reserve(nbytes)
                    self._shared.set(self._paid_until)
        if wait > 0:
            self._sleep(wait)

    def _reserve(self, nbytes: int) -> float:
        """Put ``nbytes`` on the time line; how long to wait before sending them."""
        now = self._clock()
        self._paid_until = max(self._paid_until, now) + nbytes / self.rate
        return self._paid_until - now - self.burst / self.rate
