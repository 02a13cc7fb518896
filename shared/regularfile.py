"""Read a file someone else controls (a container's, a template's) as the host's root: only a
regular file, opened without waiting (a FIFO put there would block the reader, a device node
could answer without end) and checked on the open descriptor, and only so much of it."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_regular(path: str | Path, limit: int) -> tuple[bytes, os.stat_result] | None:
    """Up to ``limit + 1`` bytes of the regular file ``path`` and its status (a caller tells a
    file too large by the extra byte), or None when it is absent or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1), st
    finally:
        os.close(fd)


__all__ = ["read_regular"]
