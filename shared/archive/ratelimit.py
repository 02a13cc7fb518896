"""An in-process bandwidth limit (what ``cstream -t`` does in Proxmox's pipelines).

A token bucket: tokens accrue at ``rate`` bytes per second up to ``burst``; consuming more than
is available sleeps for the deficit. Consumption may exceed the burst (one large chunk), which
is paid back by sleeping, so the long-run rate never exceeds the limit.

One bucket may be shared by several threads (parallel backups: ``--bwlimit`` is the total of
the run). Each consumer reserves its bytes on one virtual time line under a lock and sleeps
outside it, so together they never exceed ``rate`` plus one ``burst``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
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

    @classmethod
    def from_kib(cls, kib_per_s: int | float | None) -> TokenBucket | None:
        """Proxmox's ``bwlimit`` (KiB/s); None or 0 means unlimited."""
        if not kib_per_s:
            return None
        return cls(float(kib_per_s) * 1024)

    def chunk_size(self, maximum: int) -> int:
        """A read size that keeps the stream smooth: at most an eighth of a second's worth."""
        return max(4096, min(maximum, int(self.rate / 8)))

    def consume(self, nbytes: int) -> None:
        with self._lock:
            now = self._clock()
            self._paid_until = max(self._paid_until, now) + nbytes / self.rate
            wait = self._paid_until - now - self.burst / self.rate
        if wait > 0:
            self._sleep(wait)
