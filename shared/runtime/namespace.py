"""A private mount namespace for a process that mounts container volumes on the host.

Such a process's mounts are invisible to the host and vanish with it, even when it is killed:
unless a process it started still lives in that namespace. A container started from there would
be one (its LXC monitor's namespace derives from its caller's, and outlives it), holding what
was mounted at the kill (another guest's volume at ``/mnt/vzsnap0``) until it stops. So
containers are started in the namespace this process began in (:func:`in_host_mounts`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from .propagation import ensure_shared_root

CLONE_NEWNS = 0x00020000

_host: int | None = None  # a descriptor of the mount namespace this process began in


def private_mounts() -> bool:
    """Unshare the mount namespace (/ rslave) so this process's mounts are invisible to the host
    and vanish with it, even when it is killed. Best effort: impossible once threads run."""
    global _host
    if _host is not None:
        return True
    from .. import syscalls  # only the commands that mount volumes pay for ctypes

    # what a start in the host's namespace needs there (see lifecycle.start), checked while
    # this process still sees that namespace
    ensure_shared_root()
    host = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    if syscalls.libc().unshare(CLONE_NEWNS) != 0:
        os.close(host)
        return False
    _host = host
    # mount(2) itself rather than mount(8): the same, without a process (pct create pays it)
    with contextlib.suppress(OSError):
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    return True


def left_host() -> bool:
    """Whether this process runs in a private mount namespace of its own."""
    return _host is not None


def in_host_mounts(argv: Sequence[str]) -> tuple[list[str], tuple[int, ...]]:
    """``argv`` run in the mount namespace this process began in, and the descriptors to pass
    to it (``pass_fds``): through ``nsenter`` when this process left it, else unchanged."""
    if _host is None:
        return list(argv), ()
    return ["nsenter", f"--mount=/proc/self/fd/{_host}", "--", *argv], (_host,)
