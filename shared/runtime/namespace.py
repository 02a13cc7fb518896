"""A private mount namespace for a process that mounts container volumes on the host."""

from __future__ import annotations

import ctypes

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_SLAVE = 1 << 19


def private_mounts() -> bool:
    """Unshare the mount namespace (/ rslave) so this process's mounts are invisible to the host
    and vanish with it, even when it is killed. Best effort: impossible once threads run."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    # mount(2) itself rather than mount(8): the same, without a process (pct create pays it)
    libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_SLAVE), None)
    return True
