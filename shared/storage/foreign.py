"""The directories below a volume's tree that are another file system: nested btrfs subvolumes
and mounts, which ``tar``/``rsync --one-file-system`` and ``btrfs send`` leave out.

Asked before a backup (to say what it will hold empty) and before a migration (to refuse what
it would lose). A walk of the whole tree finds them (:func:`shared.treescan.scan_tree`) at about
14 µs a directory, and more with a cold cache: every nightly backup of a container with 100,000
directories would read all of them first. Where the tree is a btrfs subvolume (every volume of a
btrfs storage), the file system lists the subvolumes made inside it, and the mount table lists
what is mounted below it: a few system calls, whatever the tree's size. Anything else is
walked, as before.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from ..safefile import READ_DIR
from ..treescan import MAX_FOREIGN, TreeScan, scan_tree
from .btrfsplugin import BTRFS_FIRST_FREE_OBJECTID
from .loop import mounts_under

# _IOWR(0x94, 61, struct btrfs_ioctl_get_subvol_rootref_args), 4096 bytes: in and out the
# lowest subvolume id to list, then 255 pairs (subvolume id, id of the directory holding it),
# then how many pairs were filled; EOVERFLOW when more remain (kernel 4.18, no privilege)
_GET_SUBVOL_ROOTREF = 0xD000943D
_ROOTREF_SLOTS = 255
_ROOTREF_COUNT = 8 + _ROOTREF_SLOTS * 16
# _IOWR(0x94, 62, struct btrfs_ioctl_ino_lookup_user_args), 4096 bytes: in a directory id and a
# subvolume id; out the subvolume's name (256 bytes from 16) and the path of its directory
# relative to the descriptor (from 272)
_INO_LOOKUP_USER = 0xD000943E
_NAME, _PATH = 16, 272
_ARGS_SIZE = 4096


def foreign_dirs(root: Path) -> TreeScan:
    """The directories below ``root`` on another file system, sorted (``foreign``,
    ``foreign_dirs`` and ``foreign_count`` of a :class:`~shared.treescan.TreeScan`, named
    below ``root`` as given; a directory inside one of them is not counted, as a walk does not
    enter it)."""
    top = Path(os.path.realpath(root))
    subvolumes = nested_subvolumes(top)
    if subvolumes is None:
        return scan_tree(root, sizes=False)
    device = os.lstat(top).st_dev
    found = {top / rel for rel in subvolumes}
    for point in mounts_under(top):
        try:
            if point != top and os.lstat(point).st_dev != device:
                found.add(point)
        except OSError:
            continue  # unmounted meanwhile
    outermost = [root / path.relative_to(top) for path in _outermost(found)]
    return TreeScan(
        foreign=outermost[0] if outermost else None,
        foreign_dirs=outermost[:MAX_FOREIGN],
        foreign_count=len(outermost),
    )


def _outermost(paths: set[Path]) -> list[Path]:
    """``paths`` without those inside another of them, sorted. Sorted by their parts, a
    directory's descendants follow it: each is compared with the last one kept."""
    kept: list[Path] = []
    for path in sorted(paths):
        if not kept or not str(path).startswith(f"{kept[-1]}/"):
            kept.append(path)
    return kept


def nested_subvolumes(top: Path) -> list[str] | None:
    """The subvolumes made inside the subvolume ``top`` (not those inside them), relative to
    it; None when ``top`` is no btrfs subvolume root or the file system does not say (then a
    walk does)."""
    try:
        fd = os.open(top, READ_DIR)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_ino != BTRFS_FIRST_FREE_OBJECTID:
            return None  # a plain directory: its subvolume's references reach outside it
        return _child_paths(fd)
    except OSError:
        # not btrfs, an old kernel, a reference it does not let us follow, or a subvolume
        # deleted between the two questions (a running guest may): the walk copes with those
        return None
    finally:
        os.close(fd)


def _child_paths(fd: int) -> list[str]:
    """Each child subvolume's path relative to ``fd`` (the parent subvolume's root)."""
    refs: list[tuple[int, int]] = []
    lowest = 0
    while True:
        args = bytearray(_ARGS_SIZE)  # over 1 KiB: the kernel fills it in place, even on error
        struct.pack_into("<Q", args, 0, lowest)
        more = False
        try:
            fcntl.ioctl(fd, _GET_SUBVOL_ROOTREF, args)
        except OSError as exc:
            if exc.errno != errno.EOVERFLOW:
                raise
            more = True
        count = min(args[_ROOTREF_COUNT], _ROOTREF_SLOTS)
        ids = struct.unpack_from(f"<{2 * count}Q", args, 8)
        refs += zip(ids[::2], ids[1::2], strict=True)
        if not more or count == 0:
            return [_lookup(fd, tree, dirid) for tree, dirid in refs]
        lowest = struct.unpack_from("<Q", args, 0)[0]


def _lookup(fd: int, tree: int, dirid: int) -> str:
    args = bytearray(_ARGS_SIZE)
    struct.pack_into("<QQ", args, 0, dirid, tree)
    fcntl.ioctl(fd, _INO_LOOKUP_USER, args)
    name = bytes(args[_NAME:_PATH]).split(b"\0", 1)[0]
    where = bytes(args[_PATH:]).split(b"\0", 1)[0]  # "" or "dir/sub/"
    return os.fsdecode(where + name)
