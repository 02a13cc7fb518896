"""Enter a running container's namespaces and move mounts into it (hot-plug).

The new mount API does the moving: a mount is cloned into a detached tree with
``open_tree(OPEN_TREE_CLONE)`` where the host (or the LXC monitor) sees it, then a child process
enters the container's user namespace (unprivileged containers) and mount namespace and attaches
the tree with ``move_mount``. Entering the mount namespace makes the container's root the child's
root, so every path it walks afterwards resolves inside the container, never on the host.

``in_container`` (``pct push``/``pull``) and the hot-plug code share one shape: fork, enter,
work, report the child's one-line error through a pipe (``run_forked``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import sys
from collections.abc import Callable

from .. import signals, syscalls
from ..errors import CtkitError, NotFoundError, StateError, StorageError
from ..parentdeath import die_with

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_IDMAP = 0x00100000

# syscall numbers of the new mount API (the same on every architecture since 5.2)
_SYSCALLS = {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}
_ARCHES = ("x86_64", "aarch64", "arm64")


def _syscall(name: str, *args: object) -> int:
    if platform.machine() not in _ARCHES:
        raise CtkitError(f"{name}() is not supported on {platform.machine()}")
    res = syscalls.syscall(_SYSCALLS[name], *args)
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}() failed: {os.strerror(err)}")
    return res


def open_tree(path: str, *, recursive: bool = False) -> int:
    """A detached clone of the mount at ``path`` (the file or directory itself)."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    cpath = ctypes.c_char_p(os.fsencode(path))
    return _syscall("open_tree", ctypes.c_int(AT_FDCWD), cpath, ctypes.c_uint(flags))


def move_mount(tree: int, target: int) -> None:
    """Attach the detached ``tree`` on the file or directory open as ``target``."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    _syscall(
        "move_mount",
        ctypes.c_int(tree),
        ctypes.c_char_p(b""),
        ctypes.c_int(target),
        ctypes.c_char_p(b""),
        ctypes.c_uint(flags),
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def idmap_tree(tree: int, userns_fd: int) -> None:
    """Make the detached ``tree`` an id-mapped mount through the user namespace ``userns_fd``."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    _syscall(
        "mount_setattr",
        ctypes.c_int(tree),
        ctypes.c_char_p(b""),
        ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )


def setns(fd: int, nstype: int, what: str) -> None:
    if syscalls.libc().setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise CtkitError(f"failed to enter the container's {what} namespace: {os.strerror(err)}")


def unshare(flags: int, what: str) -> None:
    if syscalls.libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise CtkitError(f"unable to create a new {what} namespace: {os.strerror(err)}")


def ns_fd(pid: int, kind: str) -> int:
    try:
        return os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        message = f"failed to open the {kind} namespace of pid {pid}: {err.strerror}"
        raise CtkitError(message) from None


def parent_pid(pid: int) -> int:
    """The parent of the container's init: LXC's monitor, whose mount namespace the hooks use."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise CtkitError(f"no parent of pid {pid}")


def enter(pid: int, *, userns: bool, mount: bool = True) -> None:
    """Enter the user (if asked, as its root) and mount namespace of ``pid``; in a child only."""
    user = ns_fd(pid, "user") if userns else None
    mnt = ns_fd(pid, "mnt") if mount else None
    if user is not None:
        _enter_as_root(user)
    if mnt is not None:
        setns(mnt, CLONE_NEWNS, "mount")
        os.chdir("/")


def _enter_as_root(user: int) -> None:
    """In a child of :func:`run_forked`: enter the user namespace ``user`` as its root. The
    kernel clears a process's parent-death signal when its ids change: asked for again, or the
    child of a SIGKILLed ``pct push`` went on, and overwrote the file a later push had written."""
    parent = os.getppid()
    setns(user, CLONE_NEWUSER, "user")
    os.setgid(0)
    os.setuid(0)
    # the host root's supplementary groups (host gid 0) would still open group-readable files
    # the container's root may not
    os.setgroups([])
    die_with(parent)


# the errors a child's exit status carries back as themselves (the rest are a CtkitError)
_KINDS: tuple[type[CtkitError], ...] = (NotFoundError, StateError, StorageError)
_CARRIED = {cls.exit_code: cls for cls in _KINDS}


def _ignore(_signum: int, _frame: object) -> None:
    """A handler that does nothing (not SIG_IGN, which a program the child runs would keep)."""


def run_forked(work: Callable[[], None], what: str) -> None:
    """Run ``work`` in a forked child (which may enter namespaces); its error comes back as a
    CtkitError with the child's message (a missing file, a wrong state and a storage failure
    as themselves, for their exit codes)."""
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            os.close(rfd)
            # the parent acts on a Ctrl-C or TERM (after the step it holds, or by leaving, which
            # ends this child): the parent's handler, inherited, raised in the middle of the
            # child's netlink loop, and asyncio printed its half-closed generators
            for sig in signals.INTERRUPTS:
                signal.signal(sig, _ignore)
            # a SIGKILLed pct left its child to finish a hot-plug (the volume mounted in the
            # container) whose config it never saved: the config said it was still pending
            die_with(parent)
            work()
        except BaseException as err:
            text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            os.write(wfd, text.encode(errors="replace")[:4096])
            code = err.exit_code if isinstance(err, CtkitError) and type(err) in _KINDS else 1
        os._exit(code)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
    except BaseException:  # interrupted outside held work: the child ends before we go on
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        raise
    _pid, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise _CARRIED.get(code, CtkitError)(message or f"{what} failed (status {status})")


def in_container(
    pid: int,
    work: Callable[[], None],
    *,
    userns: bool,
    host_view: Callable[[], None] | None = None,
) -> None:
    """Run ``work`` in a child that entered the mount (and user) namespace of CT init ``pid``
    (``pct push``/``pull``). The child's root is the CT's root, so every path it opens resolves
    inside the container; like the chroot helper (``shared.guest.chroot``), it runs only code
    that is already loaded, so a lazy import can never pick up a module from the container.
    ``host_view`` runs first, in the mount namespace only: it sees the host's ids of files."""
    from ..guest.chroot import forbid_imports

    try:
        mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise CtkitError("failed to open the container's mount namespace") from None
    user = ns_fd(pid, "user") if userns else None

    def child() -> None:
        forbid_imports()
        setns(mnt, CLONE_NEWNS, "mount")
        os.chdir("/")
        if host_view is not None:
            host_view()
        if user is not None:
            _enter_as_root(user)
        work()

    try:
        run_forked(child, "file transfer for CT")
    finally:
        for fd in (mnt, user):
            if fd is not None:
                os.close(fd)
