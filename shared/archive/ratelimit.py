"""An in-process bandwidth limit (what ``cstream -t`` does in Proxmox's pipelines).

A token bucket: tokens accrue at ``rate`` bytes per second up to ``burst``; consuming more than
is available sleeps for the deficit. Consumption may exceed the burst (one large chunk), which
is paid back by sleeping, so the long-run rate never exceeds the limit.
"""

from __future__ import annotations

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
        self._tokens = self.burst
        self._last = clock()

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
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= nbytes
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self._sleep(wait)
            # The sleep refilled exactly the deficit.
            self._tokens = 0.0
            self._last = now + wait
