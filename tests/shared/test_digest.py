"""``DigestRing``: the digest of hashlib, bounded memory, errors handed back, no thread left."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from shared.digest import DigestRing


def _ring_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "digest-ring"]


def _feed(ring: DigestRing, data: bytes) -> None:
    buf = ring.take()
    buf[: len(data)] = data
    ring.lend(buf, len(data))


def test_same_digest_as_hashlib() -> None:
    chunks = [os.urandom(n) for n in (1, 1000, 1 << 16, 3, 70_000, 0)] * 5
    plain = hashlib.sha512()
    with DigestRing(hashlib.sha512(), count=3, size=1 << 16) as ring:
        for chunk in chunks:
            plain.update(chunk[: 1 << 16])
            _feed(ring, chunk[: 1 << 16])
        assert ring.drain() == sum(len(c[: 1 << 16]) for c in chunks)
    assert ring.hasher.hexdigest() == plain.hexdigest()


def test_buffers_are_reused_and_bounded() -> None:
    release = threading.Event()

    class Slow:
        def update(self, data: memoryview) -> None:
            release.wait()

    with DigestRing(Slow(), count=2, size=16) as ring:
        first, second = ring.take(), ring.take()
        ring.lend(first, 16)  # the worker blocks on this one
        ring.lend(second, 16)
        taken: list[bytearray] = []
        waiter = threading.Thread(target=lambda: taken.append(ring.take()))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # the reader waits instead of allocating a third buffer
        release.set()
        waiter.join(5)
        assert taken[0] is first
        assert ring.drain() == 32


def test_a_failing_hasher_is_reported_and_never_blocks_the_reader() -> None:
    class Broken:
        def update(self, data: memoryview) -> None:
            raise ValueError("hasher broke")

    with DigestRing(Broken(), count=2, size=8) as ring:
        for _ in range(10):  # more than the ring holds: the buffers keep coming back
            _feed(ring, b"12345678")
        with pytest.raises(ValueError, match="hasher broke"):
            ring.drain()


def test_no_hasher_no_thread() -> None:
    before = len(_ring_threads())
    with DigestRing(None, size=8) as ring:
        assert len(_ring_threads()) == before
        for _ in range(3):
            _feed(ring, b"abc")
        assert ring.drain() == 0


def test_the_worker_ends_with_the_block() -> None:
    before = len(_ring_threads())
    with DigestRing(hashlib.sha256()) as ring:
        _feed(ring, b"x" * 1000)
        assert len(_ring_threads()) == before + 1
    assert len(_ring_threads()) == before
    assert ring.hashed == 1000  # what was lent before leaving the block is hashed
