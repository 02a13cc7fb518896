"""Mount a new mount point into a running container (``pct set --mpN`` hot-plug).

As Proxmox does it: the mount is staged in the LXC monitor's mount namespace (so the container
can never free the loop device behind it by unmounting its copy), cloned with ``open_tree``, and
the clone is moved onto the mount point's directory inside the container. The directory is made
by walking from the container's root without following symlinks, as its root user.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from .. import paths
from ..archive.idmap import IdMapEntry
from ..ctconfig.mountpoints import MountPoint
from ..errors import CtkitError
from ..storage.loop import is_mounted, unmount
from . import nsenter
from .beneath import open_beneath, path_parts
from .idmapmount import mount_userns, wanted
from .mounts import mount_one


def staging_dir(vmid: int, key: str) -> Path:
    return paths.lxc_dir(vmid) / ".hotplug" / key


def hotplug_mount(
    vmid: int, mp: MountPoint, pid: int, *, unprivileged: bool, ct_map: Sequence[IdMapEntry] = ()
) -> None:
    """Mount ``mp`` at its path inside the running container whose init is ``pid``
    (id-mapped through ``ct_map`` when it asks for ``idmap=``)."""
    if not path_parts(mp.path):
        raise CtkitError(f"invalid mount point path '{mp.path}'")
    monitor = nsenter.parent_pid(pid)
    stage = staging_dir(vmid, mp.key)

    with contextlib.ExitStack() as stack:
        userns = stack.enter_context(mount_userns(mp, ct_map, pid)) if wanted(mp, ct_map) else None
        _staged_move(vmid, mp, pid, monitor, stage, unprivileged, userns)


def _staged_move(
    vmid: int,
    mp: MountPoint,
    pid: int,
    monitor: int,
    stage: Path,
    unprivileged: bool,
    userns: int | None,
) -> None:
    def work() -> None:
        nsenter.enter(monitor, userns=False)
        stage.mkdir(parents=True, exist_ok=True)
        mount_one(mp, stage, read_only=mp.ro, snapshot=None)
        tree = nsenter.open_tree(str(stage))
        if userns is not None:
            try:
                nsenter.idmap_tree(tree, userns)
            except OSError as err:
                raise CtkitError(
                    f"the file system does not support id-mapped mounts ({err.strerror})"
                ) from None
        nsenter.enter(pid, userns=unprivileged)
        target = open_beneath(Path("/"), mp.path, create=(0, 0))
        try:
            nsenter.move_mount(tree, target)
        finally:
            os.close(target)

    def undo() -> None:
        nsenter.enter(monitor, userns=False)
        if is_mounted(stage):
            unmount(stage, lazy=True)

    try:
        nsenter.run_forked(work, f"hot-plug of {mp.key}")
    except CtkitError:
        nsenter.run_forked(undo, f"unmounting the staged {mp.key}")
        raise
