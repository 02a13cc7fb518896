"""``ThreadedHasher``: the same digest as hashlib, bounded memory, no thread left behind."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time

from shared.http import ThreadedHasher


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_digest_worker" in t.name]


def test_same_digest_as_hashlib() -> None:
    chunks = [os.urandom(n) for n in (0, 1, 1000, 1 << 20, 3, 70_000)] * 3
    plain, threaded = hashlib.sha512(), ThreadedHasher(hashlib.sha512())
    for chunk in chunks:
        plain.update(chunk)
        threaded.update(chunk)
    assert threaded.hexdigest() == plain.hexdigest()
    # after the digest it keeps working like a hashlib object (synchronously)
    plain.update(b"more")
    threaded.update(b"more")
    assert threaded.hexdigest() == plain.hexdigest()
    assert ThreadedHasher(hashlib.md5()).hexdigest() == hashlib.md5().hexdigest()


def test_queue_is_bounded() -> None:
    release = threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.seen = 0

        def update(self, data: bytes) -> None:
            release.wait()
            self.seen += 1

        def hexdigest(self) -> str:
            return str(self.seen)

    hasher = ThreadedHasher(Slow(), depth=2)
    hasher.update(b"a")  # taken by the worker, which blocks
    time.sleep(0.1)
    hasher.update(b"b")
    hasher.update(b"c")  # the queue is full now
    blocked = threading.Thread(target=hasher.update, args=(b"d",))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the producer waits instead of piling up chunks
    release.set()
    blocked.join(5)
    assert hasher.hexdigest() == "4"


def test_an_abandoned_hasher_stops_its_thread() -> None:
    before = len(_digest_threads())
    hasher = ThreadedHasher(hashlib.sha256())
    hasher.update(b"x" * 1000)
    assert len(_digest_threads()) == before + 1
    del hasher
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_digest_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_digest_threads()) == before
