"""The file systems inside a backed-up volume that the backup leaves out, named in its log.

tar and rsync run with ``--one-file-system`` (Proxmox's flags), and a btrfs snapshot holds no
nested subvolume, so a directory on another file system is archived empty (restic, which reads a
stop-mode tree across file systems, is the exception). On btrfs that is every subvolume made
inside the container: docker's btrfs driver, systemd-nspawn's ``/var/lib/machines``, a ``btrfs
subvolume create`` by hand. Proxmox backs them up empty without a word; the backup warns here,
before it starts, so that no one finds out at restore time. Only volumes on btrfs are looked at:
on other file systems a volume holds no such directory. A subvolume volume is not walked: the
file system lists the subvolumes inside it (see :mod:`shared.storage.foreign`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from shared.ctconfig.mountpoints import MountPoint
from shared.errors import CtkitError
from shared.storage.api import volume_path
from shared.storage.btrfsplugin import fs_uuid
from shared.storage.config import load_config
from shared.storage.foreign import foreign_dirs

NAMED = 10  # directories named a volume; the rest are counted


def left_out(included: Sequence[MountPoint]) -> list[str]:
    """One warning line per directory the backup will archive empty, volume by volume."""
    lines: list[str] = []
    cfg = None
    for mp in included:
        if mp.type != "volume":
            continue
        cfg = cfg or load_config()
        try:
            path = volume_path(mp.volume, cfg=cfg)
        except CtkitError:
            continue  # the backup itself says what is wrong with it
        if _on_btrfs(path):
            lines += _volume_lines(mp, path)
    return lines


def _on_btrfs(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False  # an image file, or a link, is no tree to walk
    try:
        return fs_uuid(path) is not None
    except OSError:
        return False


def _volume_lines(mp: MountPoint, path: Path) -> list[str]:
    scan = foreign_dirs(path)
    where = PurePosixPath(mp.path if mp.key != "rootfs" else "/")
    names = sorted(str(where / found.relative_to(path)) for found in scan.foreign_dirs)
    lines = [
        f"'{name}' is another file system (a btrfs subvolume) inside {mp.key}: "
        "the backup holds it as an empty directory"
        for name in names[:NAMED]
    ]
    if scan.foreign_count > NAMED:
        lines.append(f"{mp.key}: {scan.foreign_count - NAMED} more such directories")
    return lines
