"""Run a function in a forked child that entered a running container's mount (and user)
namespace - ``pct push``/``pull``. The child's root is the container's root, so every path it
opens resolves inside the container.

Like the chroot helper (``shared.guest.chroot``), the child runs only code that is already
loaded: its import path is emptied before it enters the container, so a lazy import can never
pick up a Python module from the container's file system.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

from shared.errors import CtkitError
from shared.guest.chroot import forbid_imports

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000


def _setns(libc: ctypes.CDLL, fd: int, nstype: int, what: str) -> None:
    if libc.setns(fd, nstype) != 0:
        raise CtkitError(f"failed to enter the container's {what} namespace")


def in_container(pid: int, work: Callable[[], None], *, userns: bool) -> None:
    """Run ``work`` in a child that entered the mount (and user) namespace of CT init ``pid``.

    The child's root is the CT's root, so every path it opens resolves inside the container.
    Errors come back as CtkitError with the child's message.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise CtkitError("failed to open the container's mount namespace") from None
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC) if userns else None
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            os.close(rfd)
            forbid_imports()
            _setns(libc, mnt, CLONE_NEWNS, "mount")
            os.chdir("/")
            if user is not None:
                _setns(libc, user, CLONE_NEWUSER, "user")
                os.setgid(0)
                os.setuid(0)
            work()
        except BaseException as err:
            os.write(wfd, str(err).encode(errors="replace")[:4096])
            code = 1
        os._exit(code)
    os.close(wfd)
    for fd in (mnt, user):
        if fd is not None:
            os.close(fd)
    with os.fdopen(rfd, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _pid, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise CtkitError(message or f"file transfer for CT failed (status {status})")
