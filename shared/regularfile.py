"""Read a file someone else controls (a container's, a template's) as the host's root: only a
regular file, opened without waiting (a FIFO put there would block the reader, a device node
could answer without end) and checked on the open descriptor, and only so much of it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(
    path: str | Path, limit: int, *, follow_symlinks: bool = True
) -> tuple[bytes, os.stat_result] | None:
    """Up to ``limit + 1`` bytes of the regular file ``path`` and its status (a caller tells a
    file too large by the extra byte), or None when it is absent or not a regular file (nor,
    without ``follow_symlinks``, a symlink to one)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_symlinks:
            return None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1), st
    finally:
        os.close(fd)


class UnreadableFile(Exception):
    """What stands at a path is no regular file, or holds more than the reader takes;
    ``reason`` completes "'<path>' ..." in the caller's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_whole(path: str | Path, limit: int) -> bytes:
    """The whole of the regular file ``path`` (a file a person gives or edits): raises
    FileNotFoundError when nothing is there, :class:`UnreadableFile` when something else is (a
    FIFO would have blocked the reader) or it holds more than ``limit`` bytes, and OSError when
    it cannot be read."""
    found = read_regular(path, limit)
    if found is None:
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        raise UnreadableFile("is not a regular file")
    if len(found[0]) > limit:
        raise UnreadableFile(f"is too large (more than {limit} bytes)")
    return found[0]


__all__ = ["UnreadableFile", "read_regular", "read_whole"]
