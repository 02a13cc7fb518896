"""A private mount namespace for a process that mounts container volumes on the host."""

from __future__ import annotations

import ctypes
import subprocess

CLONE_NEWNS = 0x00020000


def private_mounts() -> bool:
    """Unshare the mount namespace (/ rslave) so this process's mounts are invisible to the host
    and vanish with it, even when it is killed. Best effort: impossible once threads run."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    subprocess.run(["mount", "--make-rslave", "/"], capture_output=True, check=False)
    return True
