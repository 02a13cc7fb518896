"""Start writing dirty pages to disk early, while more data still arrives, so that the final
flush (an fsync before a rename, an unmount) finds little left.

Two scales of the same idea:

- one file (:func:`start_writeback`): a download is fsynced before its rename; left alone, the
  kernel would start writing at that moment and the fsync would wait for the whole file.
  ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` begins the write-back of what is already written
  without waiting for it and without dropping the pages from the cache. Best effort: without
  the call, the fsync does it all.
- a whole file system mounted from an image (:func:`early_writeback`): an ext4 image on a loop
  device keeps everything written to it dirty until the unmount, which then pushes it all
  through the loop device while the caller waits (a third of ``pct create``'s time for a
  200 MB template). ``syncfs`` now and then from a thread does that writing on the otherwise
  idle core and disk, overlapped with the extraction. Only for file systems the caller mounted
  from an image: on the host's own file system a ``syncfs`` would flush everybody's data.

ctypes is loaded at the first call: during a transfer, not at start-up.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .safefile import READ_DIR

SYNC_FILE_RANGE_WRITE = 2
# seconds between the end of one syncfs and the next. At 0.25 s, a 200 MiB template (0.2 s of
# tar) was extracted before the first call; at 0.02 s the write-back keeps pace with tar, and
# pct create into a raw image took 0.86-0.88x the time (16 and 10 paired runs). A syncfs with
# nothing to write returns at once; one with much to write takes longer than the interval.
INTERVAL = 0.02


@functools.cache
def _libc(name: str) -> Any:
    """The libc function ``name`` with errno kept, or None where libc has no such function."""
    from . import syscalls

    try:
        return getattr(syscalls.libc(), name)
    except (OSError, AttributeError):
        return None


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    import ctypes

    func = _libc("sync_file_range")
    if func is None:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


@functools.cache
def _syncfs() -> Callable[[int], int]:
    import ctypes

    func = _libc("syncfs")
    if func is None:
        raise OSError("syncfs is not available")
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


def syncfs(fd: int) -> None:
    """syncfs(2): write the file system holding ``fd`` back and wait. Raises the write error
    (EIO, ENOSPC) that hit any of its files since ``fd`` was opened, once per error, even when
    the write-back had already happened in the background."""
    from . import syscalls

    syscalls.check(_syncfs()(fd))


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to begin writing ``length`` bytes at ``offset`` of ``fd`` to disk; True
    when it took the request (it may still be writing when this returns)."""
    func = _sync_file_range()
    if func is None or length <= 0:
        return False
    return func(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0


class _Flusher:
    """A thread that calls ``syncfs`` on the file systems at ``targets`` until stopped."""

    def __init__(self, targets: Sequence[Path], interval: float) -> None:
        self._syncfs = _syncfs()
        self._fds: list[int] = []
        try:
            for target in targets:
                self._fds.append(os.open(target, READ_DIR))
        except OSError:
            self._close()
            raise
        self._interval = interval
        self._stop = threading.Event()
        self.calls = 0
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for fd in self._fds:
                # an error (EIO) is reported to every descriptor opened before it: the
                # caller's check (MountedTree.flush) still sees it
                self._syncfs(fd)
            self.calls += 1

    def stop(self) -> None:
        """Stop and close the file descriptors, which would keep the unmount busy. A signal
        while the thread finishes its last syncfs waits (``signals.held``): it cut the wait
        short and left the descriptors open, and the new volumes of a restore stayed busy
        (their loop devices attached) until the process ended."""
        from shared import signals

        self._stop.set()
        with signals.held():
            self._thread.join()
            self._close()

    def _close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


@contextlib.contextmanager
def early_writeback(targets: Sequence[Path], interval: float = INTERVAL) -> Iterator[None]:
    """Write the file systems mounted at ``targets`` back in the background while the block
    runs; on leaving it (also by an exception) the thread is stopped and its descriptors
    closed, so that the file systems can be unmounted at once."""
    if not targets:
        yield
        return
    flusher = _Flusher(targets, interval)
    try:
        yield
    finally:
        flusher.stop()
