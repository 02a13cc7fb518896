"""Start writing a file's dirty pages to disk early, while the rest of it still arrives.

A download is fsynced before its rename; left alone, the kernel would start writing at that
moment, and the fsync would wait for the whole file. ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
begins the write-back of what is already written without waiting for it and without dropping
the pages from the cache, so the disk works alongside the network and the final fsync (still
done, for durability) finds little left. Best effort: without the call, the fsync does it all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    # ctypes is loaded here, at the first call: during a transfer, not at start-up
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to begin writing ``length`` bytes at ``offset`` of ``fd`` to disk; True
    when it took the request (it may still be writing when this returns)."""
    func = _sync_file_range()
    if func is None or length <= 0:
        return False
    return func(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0
