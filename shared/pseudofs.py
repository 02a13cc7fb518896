"""Tell an open file on a kernel pseudo file system (procfs, sysfs, debugfs, ...) by the
``f_type`` magic of ``fstatfs``.

Such a "regular file" is an interface to the kernel, not data: reading it can expose host-wide
state (``/proc/timer_list``, ``/proc/slabinfo``), consume it (``/proc/kmsg`` drains the kernel
ring buffer) or block forever. A copy of a container's file (``pct pull``) refuses them, whoever
may open them. FUSE (lxcfs' ``/proc/meminfo`` and friends) is not listed: its data comes from a
user-space daemon, within what the opener may read anyway.
"""

from __future__ import annotations

import ctypes

from . import syscalls

# <linux/magic.h>
PSEUDO_FS_MAGICS: dict[int, str] = {
    0x9FA0: "proc",
    0x62656572: "sysfs",
    0x64626720: "debugfs",
    0x74726163: "tracefs",
    0x73636673: "securityfs",
    0x0027E0EB: "cgroup",
    0x63677270: "cgroup2",
    0x62656570: "configfs",
    0xCAFE4A11: "bpf",
    0x6165676C: "pstore",
    0xDE5E81E4: "efivarfs",
    0xF97CFF8C: "selinuxfs",
    0x43415D53: "smackfs",
    0x42494E4D: "binfmt_misc",
    0x65735543: "fusectl",
    0x00001CD1: "devpts",
    0x19800202: "mqueue",
    0x6E736673: "nsfs",
}

# struct statfs is larger than this on every architecture; f_type is its first word
_STATFS_BUF = 256


def fs_magic(fd: int) -> int:
    """The ``f_type`` of the file system ``fd`` is on (32 bits, as <linux/magic.h> lists it)."""
    buf = ctypes.create_string_buffer(_STATFS_BUF)
    syscalls.check(syscalls.libc().fstatfs(ctypes.c_int(fd), buf))
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def pseudo_fs_name(fd: int) -> str | None:
    """The name of the kernel pseudo file system ``fd`` is on, or None for any other."""
    return PSEUDO_FS_MAGICS.get(fs_magic(fd))


__all__ = ["PSEUDO_FS_MAGICS", "fs_magic", "pseudo_fs_name"]
