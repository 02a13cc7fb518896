"""Extract backup members straight into a container, owners mapped into its id space.

The members land in a directory that does not exist yet (``dest``, a path inside the
container). A container controls its own files: a path through its tree may meet a symlink to a
host path at any moment, so nothing here is reached by a path below the container's root. The
parent of ``dest`` is opened by walking the tree without following any symlink; in it a staging
directory only the host's root may enter is made (the container's root is not the host's, even
where it owns the parent), and tar, under the container's id map as in a restore, fills a new
directory inside it, entered through an fd. Only when tar is done is that directory renamed to
``dest``, fd to fd. While tar runs the container cannot reach what it writes, so it cannot slip
a symlink under it: tar of an unprivileged container runs as host uid 100000, which every
container with the default id map shares, and would write into another container's files
through one.

A stopped container's volumes are mounted for the extraction and unmounted afterwards, under
its config lock. A running container is written through its root directory volume (a
``subvol``; image volumes and mount points are mounted in the container's namespace only), and
only when it is unprivileged (a privileged container's root is the host's: it could enter the
staging directory).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
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
from shared.safefile import READ_DIR, remove_tree
from shared.storage.api import volume_path
from shared.storage.volumes import volume_format

from .extract import Extracted, extract_paths
from .locate import Backup

Root = tuple[Path, list[IdMapEntry], tuple[int, int]]
STAGE_PREFIX = ".vzdump-extract-"


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
                with tree.writing():
                    yield mnt, idmap, ids
            finally:
                tree.unmount(lazy=True)
        finally:
            with contextlib.suppress(OSError):
                mnt.rmdir()


def running_root(conf: Config, dest: str) -> Path:
    """A running CT's root directory volume as the host sees it; ``dest`` must be on it (its
    mount points and image volumes are mounted in the container's own namespace only)."""
    parts = path_parts(dest)
    holders = [
        mp
        for mp in conf.mountpoints(strict=True)
        if mp.key != "rootfs" and parts[: len(path_parts(mp.path))] == path_parts(mp.path)
    ]
    if holders:  # the deepest one holds it (mp1 at /data/sub, not mp0 at /data)
        mp = max(holders, key=lambda m: len(path_parts(m.path)))
        raise StateError(f"'{dest}' is on mount point {mp.key} - stop the CT first")
    rootfs = next(m for m in conf.mountpoints() if m.key == "rootfs")
    if rootfs.type != "volume" or volume_format(rootfs.volume) != "subvol":
        raise StateError(f"CT {conf.vmid} is running and its root is an image - stop it first")
    return volume_path(rootfs.volume)


def dest_parent(root: Path, dest: str) -> tuple[int, str]:
    """An fd of the directory that gets ``dest`` (reached below ``root`` without a symlink) and
    the new name; ``dest`` must not exist yet."""
    parts = path_parts(dest)
    if not parts:
        raise AlreadyExistsError("destination '/' exists; give a new directory such as /restored")
    parent = open_beneath(root, "/".join(parts[:-1]))
    try:
        os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return parent, parts[-1]
    except BaseException:
        os.close(parent)
        raise
    os.close(parent)
    raise AlreadyExistsError(f"destination '{dest}' exists in the container")


@contextlib.contextmanager
def staging_dir(parent: int) -> Iterator[int]:
    """An fd of a new directory in ``parent`` that only the host's root may enter; removed
    afterwards (when empty, and only if its name still is this directory: the container may
    have renamed it, but it cannot enter it)."""
    name = STAGE_PREFIX + secrets.token_hex(8)
    os.mkdir(name, 0o700, dir_fd=parent)
    fd = os.open(name, READ_DIR, dir_fd=parent)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise StateError("the extraction's staging directory was replaced in the container")
        yield fd
    finally:
        _remove_if_same(parent, name, fd)
        os.close(fd)


def _remove_if_same(parent: int, name: str, fd: int) -> None:
    with contextlib.suppress(OSError):
        made, now = os.fstat(fd), os.stat(name, dir_fd=parent, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
            os.rmdir(name, dir_fd=parent)


def extract_into_ct(backup: Backup, members: Sequence[str], vmid: int, dest: str) -> Extracted:
    """Extract ``members`` of ``backup`` below the new directory ``dest`` of CT ``vmid``."""
    with container_root(vmid, dest) as (root, idmap, ids):
        parent, name = dest_parent(root, dest)
        try:
            with staging_dir(parent) as stage:
                os.mkdir(name, 0o700, dir_fd=stage)
                os.chown(name, *ids, dir_fd=stage, follow_symlinks=False)
                try:
                    result = _fill(backup, members, stage, name, idmap)
                    _move(stage, parent, name, dest)
                except BaseException:
                    remove_tree(name, dir_fd=stage, ignore_errors=True)
                    raise
        finally:
            os.close(parent)
    return result


def _fill(
    backup: Backup, members: Sequence[str], stage: int, name: str, idmap: list[IdMapEntry]
) -> Extracted:
    """tar into ``stage``/``name``, entered through the fd (tar's ids may not reach it by path)."""
    target = os.open(name, READ_DIR, dir_fd=stage)
    try:
        cwd = f"/proc/{os.getpid()}/fd/{target}"
        return extract_paths(backup, members, Path("."), idmap=idmap or None, cwd=cwd)
    finally:
        os.close(target)


def _move(stage: int, parent: int, name: str, dest: str) -> None:
    try:
        os.rename(name, name, src_dir_fd=stage, dst_dir_fd=parent)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise AlreadyExistsError(f"destination '{dest}' exists in the container") from None
        raise
