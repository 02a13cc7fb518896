"""System calls that Python's ``os`` module lacks, made through the C library.

Each replaces a program ctkit used to start for one call (``mount``, ``umount``, ``ionice``):
a fork and exec of 1-3 ms apiece, and one more program that can be missing or fail to start.
The calls keep the programs' meaning (see each function) and raise ``OSError`` with the
kernel's errno.
"""

from __future__ import annotations

import ctypes
import functools
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

# the per-mount flags a mount(8) option names (the rest of its options go to the file system)
MOUNT_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "sync": MS_SYNCHRONOUS,
    "dirsync": MS_DIRSYNC,
    "nosymfollow": MS_NOSYMFOLLOW,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
    "lazytime": MS_LAZYTIME,
}
# statvfs's f_flag bits and the mount flags they stand for
_STATVFS_FLAGS = {
    os.ST_RDONLY: MS_RDONLY,
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_SYNCHRONOUS: MS_SYNCHRONOUS,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
    0x2000: MS_NOSYMFOLLOW,  # ST_NOSYMFOLLOW (Linux 5.10), not in Python 3.11's os
}

IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30}


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def check(rc: int, path: str | None = None) -> int:
    """``rc`` of a C library call that returns -1 and sets errno on failure; that failure as
    an ``OSError`` with the kernel's errno (and ``path``)."""
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return rc


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2)."""
    c = libc()
    check(
        c.mount(
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else os.fsencode(fstype),
            ctypes.c_ulong(flags),
            None if data is None else os.fsencode(data),
        ),
        target,
    )


def mount_flags(options: list[str]) -> tuple[int, list[str]]:
    """The per-mount flags of mount(8) options, and the options left for the file system."""
    flags, rest = 0, []
    for option in options:
        if option in MOUNT_FLAGS:
            flags |= MOUNT_FLAGS[option]
        elif option != "rw":
            rest.append(option)
    return flags, rest


def current_flags(path: str) -> int:
    """The per-mount flags the mount at ``path`` has now, which a remount must repeat to keep
    (mount(8) reads them from the mount table: ``remount,bind,ro`` of a nosuid mount stays
    nosuid)."""
    have, flags = os.statvfs(path).f_flag, 0
    for bit, flag in _STATVFS_FLAGS.items():
        if have & bit:
            flags |= flag
    return flags


def umount(target: str, flags: int = 0) -> None:
    """umount2(2): EBUSY when in use, EINVAL when ``target`` is not a mount point."""
    check(libc().umount2(os.fsencode(target), flags), target)


def rename_exchange(a: str, b: str) -> None:
    """renameat2(2) with RENAME_EXCHANGE: swap two paths atomically."""
    check(libc().renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE))


def ioprio_set(level: int) -> None:
    """This process's I/O priority, as ``ionice -c 2 -n <level>`` (best effort, 0-7), or
    ``ionice -c 3`` (idle) for 8 and above. Its children inherit it."""
    machine = os.uname().machine
    number = _IOPRIO_SET.get(machine)
    if number is None:
        raise OSError(0, f"ioprio_set is not known on {machine}")
    prio = 3 << IOPRIO_CLASS_SHIFT if level >= 8 else 2 << IOPRIO_CLASS_SHIFT | max(level, 0)
    check(syscall(number, IOPRIO_WHO_PROCESS, os.getpid(), prio))


def syscall(number: int, *args: object) -> int:
    """syscall(2) for a call the C library has no function for: its raw result (-1 on
    failure, errno kept for :func:`check`)."""
    c = libc()
    c.syscall.restype = ctypes.c_long
    return int(c.syscall(ctypes.c_long(number), *args))
