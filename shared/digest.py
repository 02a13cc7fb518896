"""A digest computed on a worker thread over a small ring of reusable buffers.

A download reads into a buffer, writes it out and lends it to the worker, which hashes it and
hands it back. Hashing thus overlaps the next read and write (hashlib releases the GIL on
buffers over 2 KiB), no chunk is copied in user space, and memory stays at ``count * size``
bytes whatever the file size.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

Hasher = Any  # a hashlib object: update(buffer), hexdigest()


class DigestRing:
    """``take`` a free buffer, fill it, ``lend`` it; ``drain`` waits for the hashing to finish.

    Without a hasher there is no thread and a lent buffer is free again at once. A hasher that
    raises stops hashing (buffers still come back, so the reader never hangs); ``drain``
    re-raises its error.
    """

    def __init__(self, hasher: Hasher | None, *, count: int = 4, size: int = 1 << 20) -> None:
        self.hasher = hasher
        self.hashed = 0  # bytes hashed so far; exact once drained
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(count if hasher is not None else 1):
            self._free.put(bytearray(size))
        self._work: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if hasher is not None:
            self._thread = threading.Thread(
                target=self._run, args=(hasher,), name="digest-ring", daemon=True
            )
            self._thread.start()

    def take(self) -> bytearray:
        """A free buffer; waits while all of them are lent out (this bounds the memory)."""
        return self._free.get()

    def lend(self, buf: bytearray, length: int) -> None:
        """Hash the first ``length`` bytes of ``buf`` (taken from this ring), then free it."""
        if self._thread is None:
            self._free.put(buf)
        else:
            self._work.put((buf, length))

    def drain(self) -> int:
        """Wait until every lent buffer is hashed and stop the worker; the bytes hashed."""
        if self._thread is not None:
            self._work.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self.hashed

    def _run(self, hasher: Hasher) -> None:
        while (item := self._work.get()) is not None:
            buf, length = item
            if self._error is None and length:
                try:
                    with memoryview(buf) as view, view[:length] as part:
                        hasher.update(part)
                    self.hashed += length
                except BaseException as exc:  # handed to the reader by drain()
                    self._error = exc
            self._free.put(buf)

    def __enter__(self) -> DigestRing:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._work.put(None)  # what was lent is still hashed: it is in the file already
            self._thread.join()
            self._thread = None
