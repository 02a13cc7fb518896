"""Shared steps of create and restore: new-volume syntax, allocation, staging, cleanup."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared import paths
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint, new_volume_size, parse_new_volume
from shared.errors import AlreadyExistsError, CtkitError, StorageError
from shared.locks import config_lock
from shared.runtime import lxcapi
from shared.runtime.ctview import config_root_ids
from shared.runtime.mounts import MountedTree, mount_all
from shared.storage.api import get_storage
from shared.storage.volumes import alloc_volume, free_volume

Log = Callable[[str], None]
CREATE_LOCK_TIMEOUT = 5
DISK_KEY_RE = re.compile(r"rootfs|mp\d+")


def exists_message(vmid: int) -> str:
    return f"CT {vmid} already exists on node '{paths.node_name()}'"


def normalize_disk_params(params: dict[str, str], storage: str, log: Log) -> None:
    """A bare number for rootfs/mpN means ``<storage>:<n>``; unusedN cannot be created."""
    for key in list(params):
        if key.startswith("unused"):
            log(f"ignoring '{key}', cannot create/restore with unused volume")
            del params[key]
        elif DISK_KEY_RE.fullmatch(key):
            volume, sep, rest = params[key].partition(",")
            if re.fullmatch(r"\d+(\.\d+)?", volume.removeprefix("volume=")):
                params[key] = f"{storage}:{volume.removeprefix('volume=')}{sep}{rest}"
    if any(k.startswith("mp") for k in params) and "rootfs" not in params:
        raise CtkitError("mount points configured, but 'rootfs' not set - aborting")


def check_rootdir_storages(conf: Config) -> None:
    for mp in conf.mountpoints():
        new = parse_new_volume(mp.volume) if mp.type == "volume" else None
        if new is not None and new[0] is not None:
            store_ = get_storage(new[0])
            if not store_.has_content("rootdir"):
                raise StorageError(f"storage '{new[0]}' does not support container directories")


@dataclass
class Allocation:
    """Volumes allocated for a new container, freed again if anything fails."""

    vmid: int
    volids: list[str] = field(default_factory=list)

    def free_all(self, log: Log) -> None:
        for volid in reversed(self.volids):
            try:
                free_volume(volid)
            except CtkitError as err:
                log(f"unable to free volume '{volid}' - {err}")
        self.volids.clear()


def allocate(conf: Config, alloc: Allocation, default_storage: str) -> None:
    """Replace every ``STORAGE:SIZE`` mount point by a new volume (with ``size=``)."""
    uid, gid = config_root_ids(conf)
    for mp in conf.mountpoints():
        new = parse_new_volume(mp.volume) if mp.type == "volume" else None
        if new is None:
            continue
        sid, gib = new
        size = new_volume_size(gib)
        volid = alloc_volume(sid or default_storage, conf.vmid, size, root_uid=uid, root_gid=gid)
        alloc.volids.append(volid)
        conf.set(mp.key, mp.replace(volume=volid, size=size))


def create_locked_config(conf: Config, *, force: bool = False) -> None:
    """Write the new config with ``lock: create`` (only over an existing one with force)."""
    with config_lock(conf.vmid, timeout=CREATE_LOCK_TIMEOUT):
        old = store.load_or_none(conf.vmid)
        if old is not None and not force:
            raise AlreadyExistsError(exists_message(conf.vmid))
        if old is not None:
            store.check_lock(old)
        conf.set("lock", "create")
        store.save(conf)


def staging_dir(vmid: int) -> Path:
    return paths.lxc_rootfs(vmid)


@contextlib.contextmanager
def staged(
    conf: Config, include: Callable[[MountPoint], bool] | None = None
) -> Iterator[MountedTree]:
    """Mount the new volumes at ``<lxcpath>/<vmid>/rootfs`` (ro ignored) for extraction."""
    if lxcapi.is_running(conf.vmid):
        raise CtkitError(f"CT {conf.vmid} is running")
    tree = mount_all(
        conf,
        staging_dir(conf.vmid),
        root_ids=config_root_ids(conf),
        honour_ro=False,
        include=include or (lambda _mp: True),
    )
    try:
        yield tree
    finally:
        tree.unmount()


def remove_config(vmid: int, log: Log) -> None:
    try:
        store.remove(vmid)
    except CtkitError as err:
        log(f"unable to remove config of CT {vmid} - {err}")
