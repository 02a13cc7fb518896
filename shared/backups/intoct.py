"""Extract backup members straight into a container, owners mapped into its id space.

The members land in a directory that does not exist yet (``dest``, a path inside the
container), created here by walking the container's tree without following any symlink: a
container controls its own files, and writing into a directory it could have prepared (a
symlink to a host path on the way) is how a privileged container's root file system would let
an extraction out. tar runs under the container's id map, as a restore does.

A stopped container's volumes are mounted for the extraction and unmounted afterwards, under
its config lock. A running container is written through its root directory volume (a
``subvol``; image volumes and mount points are mounted in the container's namespace only), and
only when it is unprivileged: there the id map confines tar to what the container's root may
write even if the container races the extraction.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from shared import paths
from shared.archive.idmap import IdMapEntry
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.errors import AlreadyExistsError, StateError
from shared.locks import config_lock
from shared.runtime import lxcapi
from shared.runtime.beneath import open_beneath, path_parts
from shared.runtime.guestview import config_idmap, config_root_ids
from shared.runtime.mounts import mount_all
from shared.storage.api import volume_path
from shared.storage.volumes import volume_format

from .extract import Extracted, extract_paths
from .locate import Backup

Root = tuple[Path, list[IdMapEntry], tuple[int, int]]


@contextlib.contextmanager
def container_root(
    vmid: int, dest: str
) -> Iterator[tuple[Path, list[IdMapEntry], tuple[int, int]]]:
    """(the container's ``/`` on the host, its id map, its root's host ids) for the duration."""
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        idmap = config_idmap(conf)
        ids = config_root_ids(conf)
        if lxcapi.is_running(vmid):
            if not idmap:
                raise StateError(
                    f"CT {vmid} is running and privileged - stop it, or extract to a host "
                    "directory and copy from there"
                )
            yield running_root(conf, dest), idmap, ids
            return
        paths.run_dir().mkdir(parents=True, exist_ok=True)
        mnt = Path(tempfile.mkdtemp(prefix=f"extract-{vmid}-", dir=paths.run_dir()))
        try:
            tree = mount_all(conf, mnt, root_ids=ids)
            try:
                tree.watch_writes()
                yield mnt, idmap, ids
                tree.flush()
            finally:
                tree.unmount(lazy=True)
        finally:
            with contextlib.suppress(OSError):
                mnt.rmdir()


def running_root(conf: Config, dest: str) -> Path:
    """A running CT's root directory volume as the host sees it; ``dest`` must be on it (its
    mount points and image volumes are mounted in the container's own namespace only)."""
    parts = path_parts(dest)
    for mp in conf.mountpoints():
        if mp.key != "rootfs" and parts[: len(path_parts(mp.path))] == path_parts(mp.path):
            raise StateError(f"'{dest}' is on mount point {mp.key} - stop the CT first")
    rootfs = next(m for m in conf.mountpoints() if m.key == "rootfs")
    if rootfs.type != "volume" or volume_format(rootfs.volume) != "subvol":
        raise StateError(f"CT {conf.vmid} is running and its root is an image - stop it first")
    return volume_path(rootfs.volume)


def fresh_dir(root: Path, dest: str, ids: tuple[int, int]) -> Path:
    """Create ``dest`` below ``root``: its parent must exist (no symlinks on the way), it not."""
    parts = path_parts(dest)
    if not parts:
        raise AlreadyExistsError("destination '/' exists; give a new directory such as /restored")
    parent = open_beneath(root, "/".join(parts[:-1]))
    try:
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        except FileExistsError:
            raise AlreadyExistsError(f"destination '{dest}' exists in the container") from None
        os.chown(parts[-1], *ids, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)
    return root.joinpath(*parts)


def extract_into_ct(backup: Backup, members: Sequence[str], vmid: int, dest: str) -> Extracted:
    """Extract ``members`` of ``backup`` below the new directory ``dest`` of CT ``vmid``."""
    with container_root(vmid, dest) as (root, idmap, ids):
        target = fresh_dir(root, dest, ids)
        try:
            return extract_paths(backup, members, target, idmap=idmap or None)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # fd-based: follows no symlink inside
            raise
