"""Can an unprivileged container's root reach its own root file system (or its backup's
temporary directory)?

tar (at create and backup) and LXC (at start) act as the container's mapped root, e.g. host
uid 100000.
If any directory on the way to ``<lxcpath>/<vmid>/rootfs`` denies that id search permission
(a CTKIT_ROOT below ``/root``, a 0700 temp dir), they fail deep inside with a bare
``Permission denied``. This check names the directory and the permission it needs first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError


def can_search(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` (no supplementary groups) may search a directory by its mode."""
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def check_traversable(
    path: Path, uid: int, gid: int, need: str = "it cannot reach its root file system"
) -> None:
    """ConfigError naming the first existing directory on ``path`` that ``uid`` cannot search
    (and, in ``need``, what the container's root then cannot do)."""
    if uid == 0:
        return
    path = Path(os.path.abspath(path))
    for directory in [*reversed(path.parents), path]:
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            return  # created later by root with the default mode
        if stat.S_ISDIR(st.st_mode) and not can_search(st, uid, gid):
            raise ConfigError(
                f"directory '{directory}' cannot be searched by uid {uid}/gid {gid}, the "
                f"unprivileged container's root, so {need}",
                hint=f"grant search (execute) permission, e.g. chmod o+x '{directory}'",
            )
