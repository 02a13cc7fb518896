"""Mount a new mount point into a running container (``pct set --mpN`` hot-plug), and unmount
a removed one (``pct set --delete mpN``).

As Proxmox does it: the mount is staged in the LXC monitor's mount namespace (so the container
can never free the loop device behind it by unmounting its copy), cloned with ``open_tree``, and
the clone is moved onto the mount point's directory inside the container. The directory is made
by walking from the container's root without following symlinks, as its root user.

Removal undoes both copies: the container's first, without forcing, so a mount point that is in
use (open files, a working directory, a mount below it) is refused instead of being cut off under
the guest; then the monitor's (the staged mount, or the one the pre-start hook made), which lets
go of the volume (a raw image's loop device clears itself). Both unmounts name the mount point
by its last component from a directory reached without following symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from .. import paths, syscalls
from ..archive.idmap import IdMapEntry
from ..ctconfig.mountpoints import MountPoint
from ..errors import CtkitError, StorageError
from ..storage.loop import is_mounted, mount_table, unmount
from . import nsenter
from .beneath import open_beneath, path_parts
from .idmapmount import mount_userns, wanted
from .mounts import mount_one
from .mpstage import staging_dir


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


def unplug_mount(vmid: int, mp: MountPoint, pid: int, *, unprivileged: bool) -> bool:
    """Unmount ``mp`` from the running container whose init is ``pid``; a CtkitError while it is
    busy. False, with nothing done, where the kernel keeps it until the CT stops: an unprivileged
    CT started before its mount points were staged (:mod:`.mpstage`) holds them as locked mounts,
    which neither an unmount there nor one propagated from the monitor may remove."""
    parts = path_parts(mp.path)
    if not parts:
        raise CtkitError(f"invalid mount point path '{mp.path}'")
    point = "/" + "/".join(parts)
    monitor = nsenter.parent_pid(pid)
    stage = staging_dir(vmid, mp.key)
    staged = stage in mount_points_of(monitor)
    mounted = Path(point) in mount_points_of(pid)
    if unprivileged and not staged and mounted:
        return False  # started before its mount points were staged

    def inside() -> None:
        # as the host's root in the CT's mount namespace, which may unmount what the CT's own
        # root may not
        nsenter.enter(pid, userns=False)
        try:
            parent = open_beneath(Path("/"), os.path.dirname(point))  # no symlink on the way
        except FileNotFoundError:
            return
        try:
            os.fchdir(parent)  # a lone name below: nothing the CT swaps can redirect it
            syscalls.umount(parts[-1], syscalls.UMOUNT_NOFOLLOW)
        except FileNotFoundError:
            return  # the guest unmounted it and removed the directory
        except OSError as err:
            if err.errno == errno.EBUSY:
                raise CtkitError(
                    f"mount point {point} is busy in CT {vmid} (open files, a working "
                    "directory or a mount below it); it is removed at the next start or stop"
                ) from None
            if err.errno != errno.EINVAL:
                raise
            if mounted:  # a locked mount: releasing the monitor's copy would not free it
                raise CtkitError(
                    f"mount point {point} cannot be unmounted in CT {vmid} while it runs"
                ) from None
            # else the guest unmounted it
        finally:
            os.close(parent)

    def holder() -> None:
        nsenter.enter(monitor, userns=False)
        if staged:
            unmount(stage, lazy=True)  # the CT's copy is gone: nothing else uses it
            with contextlib.suppress(OSError):
                stage.rmdir()
            return
        try:
            parent = open_beneath(paths.lxc_rootfs(vmid), os.path.dirname(point))
        except (FileNotFoundError, StorageError):
            return
        try:
            os.fchdir(parent)
            syscalls.umount(parts[-1], syscalls.UMOUNT_NOFOLLOW | syscalls.MNT_DETACH)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOENT):  # not (or no longer) mounted
                raise
        finally:
            os.close(parent)

    nsenter.run_forked(inside, f"unmounting {mp.key}")
    nsenter.run_forked(holder, f"releasing {mp.key}")
    return True


def mount_points_of(pid: int) -> set[Path]:
    return {entry.point for entry in mount_table(pid)}
