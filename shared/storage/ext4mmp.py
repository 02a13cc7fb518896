"""The mark e2fsck leaves in a raw image's multi-mount protection block when it is killed.

Container file systems are made with ``-O mmp``. While e2fsck runs it sets the MMP sequence to
its own value and restores it at its end. Killed half-way - with a ``pct resize`` or
``pct fsck`` killed around it, or by the broken pipe of a parent that died - it leaves that
value behind, and from then on every mount and every e2fsck of the image refuses it
(``MMP: e2fsck being run``) until a human runs ``tune2fs -f -E clear_mmp``. The next command
that needs the image clears such a stale mark itself once no process of this host has the image
open (the caller keeps shared storages out: there another host may really be checking it).
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from . import cmd, loop

_SUPERBLOCK = 1024
_MAGIC = 0xEF53
_INCOMPAT_MMP = 0x0100
_MMP_MAGIC = 0x004D4D50
SEQ_FSCK = 0xE24D4D50  # e2fsck's own sequence value (EXT4_MMP_SEQ_FSCK)


def fsck_mark(image: Path) -> bool:
    """Whether the ext4 in ``image`` carries e2fsck's MMP mark (False for anything else)."""
    try:
        # without waiting: a FIFO in an image's place blocked this open, and with it the
        # container's start (its pre-start hook) for good
        fd = os.open(image, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return False
        with open(fd, "rb") as fh:
            fh.seek(_SUPERBLOCK)
            sb = fh.read(_SUPERBLOCK)
            if len(sb) < _SUPERBLOCK or struct.unpack_from("<H", sb, 0x38)[0] != _MAGIC:
                return False
            if not struct.unpack_from("<I", sb, 0x60)[0] & _INCOMPAT_MMP:
                return False
            block_size = 1024 << struct.unpack_from("<I", sb, 0x18)[0]
            fh.seek(struct.unpack_from("<Q", sb, 0x168)[0] * block_size)
            mmp = fh.read(8)
    except (OSError, OverflowError, ValueError):
        return False
    return len(mmp) == 8 and struct.unpack("<II", mmp) == (_MMP_MAGIC, SEQ_FSCK)


def open_here(image: Path) -> bool:
    """Whether a loop device or a process of this host has ``image`` open."""
    real = os.path.realpath(image)
    if loop.is_backing(Path(real)):
        return True
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for name in names:
            try:
                if os.readlink(fd_dir / name) == real:
                    return True
            except OSError:
                continue
    return False


def clear_stale_fsck_mark(image: Path) -> bool:
    """Clear the mark of an e2fsck that is gone; True when there was one to clear."""
    if not fsck_mark(image) or open_here(image):
        return False
    cmd.run(["tune2fs", "-f", "-E", "clear_mmp", str(image)])
    return True
