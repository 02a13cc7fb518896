"""``pct destroy``: free every volume the container owns, then remove its config."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable

from shared import jobrefs, paths
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import volume_owner
from shared.ctconfig.pending import referenced_volumes
from shared.errors import CtkitError, StateError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery
from shared.runtime.cgroups import CGroup
from shared.runtime.mounts import unmount_below
from shared.storage.config import load_config
from shared.storage.volumes import free_volume, list_vmid_volumes

Log = Callable[[str], None]


def _check(vmid: int, force: bool) -> bool:
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_protection(conf, f"can't remove CT {vmid}")
        store.check_lock(conf)
        running = lxcapi.is_running(vmid)
        if running and not force:
            raise StateError(f"unable to destroy CT {vmid} - container is running")
        return running


def destroy(
    vmid: int,
    *,
    force: bool = False,
    purge: bool = False,
    unreferenced: bool = False,
    log: Log = print,
) -> None:
    if recovery.recover(vmid, log) is not None and not store.exists(vmid):
        # a create or restore that was killed, undone by its recovery: nothing more to free
        if purge:
            _purge_jobs(vmid, log)
        return
    if _check(vmid, force):
        log(f"forced to stop CT {vmid} before destroying!")
        from shared.runtime import lifecycle  # start/stop machinery: only for a running CT

        lifecycle.stop(vmid)
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        # keeps the id reserved while volumes go, and every volume listed: when one cannot be
        # freed, the command fails and the config stays (locked) to find the rest by
        locked = conf.copy()
        locked.set("lock", "destroyed")
        store.save(locked)
        # first: a staging mount a killed create or restore left (or a pct mount's) keeps
        # its volume busy, and freeing it would fail for good
        unmount_below(paths.lxc_rootfs(vmid))
        _free_volumes(conf, unreferenced, log)
        shutil.rmtree(paths.lxc_dir(vmid), ignore_errors=True)
        CGroup(vmid).remove_stale()  # empty cgroups an aborted start may have left
        with contextlib.suppress(FileNotFoundError):
            paths.firewall_conf(vmid).unlink()
        if purge:
            _purge_jobs(vmid, log)
        store.remove(vmid)


def _owned_volumes(conf: Config) -> list[str]:
    """Every volume the config names: current, pending, unused, and those only a snapshot still
    names (a mount point deleted or replaced after the snapshot). Proxmox leaves the last kind
    behind, named by nothing once the config is gone."""
    vols = referenced_volumes(conf)
    for snap in conf.snapshots.values():
        for mp in snap.mountpoints():
            if mp.type == "volume" and mp.volume not in vols:
                vols.append(mp.volume)
    return vols


def _free_volumes(conf: Config, unreferenced: bool, log: Log) -> None:
    for volid in _owned_volumes(conf):
        if volume_owner(volid) != conf.vmid:
            log(f"ignore deletion of '{volid}', CT {conf.vmid} isn't the owner!")
            continue
        try:
            free_volume(volid)
        except CtkitError as err:
            raise CtkitError(f"unable to free volume '{volid}' - {err}") from None
    if unreferenced:
        cfg = load_config()
        for sid in cfg.ids():
            store_ = cfg.storage(sid)
            # only storages that hold guest volumes are asked (Proxmox's vdisk_list): a
            # backup-only one (restic) refuses to list images and would fail the destroy
            if store_.disabled or not store_.content & {"images", "rootdir"}:
                continue
            for volid in list_vmid_volumes(sid, conf.vmid, cfg=cfg):
                _free(volid, log)


def _free(volid: str, log: Log) -> None:
    try:
        free_volume(volid)
    except CtkitError as err:
        log(f"unable to free volume '{volid}' - {err}")


def _purge_jobs(vmid: int, log: Log) -> None:
    for job in jobrefs.remove_guest(vmid):
        log(f"removed CT {vmid} from backup job '{job}'")
