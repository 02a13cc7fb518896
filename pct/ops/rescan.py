"""``pct rescan``: volumes on the storages that belong to a container but are not in its config
become ``unusedN``; ``size=`` follows the real volume sizes (Proxmox's rescan)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import add_unused_volume, used_volumes
from shared.ctconfig.pending import referenced_volumes
from shared.errors import CommandError, CtkitError
from shared.locks import config_lock
from shared.storage.api import volume_path
from shared.storage.config import StorageConfig, load_config
from shared.storage.listing import VolumeEntry

Log = Callable[[str], None]


def _stdout(msg: str) -> None:
    print(msg, flush=True)


def scan_volumes(cfg: StorageConfig, vmid: int | None) -> list[VolumeEntry]:
    """Container volumes on every enabled storage with content ``rootdir``."""
    found = []
    for storage in cfg:
        if storage.disabled or not storage.has_content("rootdir"):
            continue
        try:
            found += storage.list_images(vmid)
        except CtkitError:
            continue  # a storage that is not mounted has nothing to add
    return found


def _path(volid: str, cfg: StorageConfig) -> Path | None:
    try:
        return volume_path(volid, cfg=cfg)
    except CtkitError:
        return None


def _used_paths(conf: Config, cfg: StorageConfig) -> set[Path]:
    """Paths, not ids: a linked clone's id names its base, and storages may alias a path."""
    volids = referenced_volumes(conf)
    volids += [volid for snap in conf.snapshots.values() for volid in used_volumes(snap.values)]
    return {p for v in volids if (p := _path(v, cfg)) is not None}


def update_unused(conf: Config, volumes: list[VolumeEntry], cfg: StorageConfig, log: Log) -> bool:
    used = _used_paths(conf, cfg)
    changed = False
    for vol in sorted(volumes, key=lambda v: v.volid):
        if vol.path in used:
            continue
        key = add_unused_volume(conf.values, vol.volid)
        used.add(vol.path)
        if key:
            changed = True
            log(f"CT {conf.vmid}: add unreferenced volume '{vol.volid}' as '{key}' to config.")
    return changed


def update_disksize(conf: Config, volumes: list[VolumeEntry], log: Log) -> bool:
    sizes = {v.volid: v.size for v in volumes}
    changed = False
    for mp in conf.mountpoints():
        size = sizes.get(mp.volume)
        if not size or size == mp.size:  # 0: a directory volume without a quota has none
            continue
        conf.set(mp.key, mp.replace(size=size).render())
        changed = True
        log(f"CT {conf.vmid}: updated volume size of '{mp.volume}' in config.")
    return changed


def rescan(vmid: int | None = None, *, dryrun: bool = False, log: Log = _stdout) -> None:
    if dryrun:
        log("NOTE: running in dry-run mode, won't write changes out!")
    log("rescan volumes...")
    _recover(vmid, log)
    cfg = load_config()
    volumes = scan_volumes(cfg, vmid)
    vmids = [vmid] if vmid is not None else store.list_vmids()
    failed = []
    for ct in vmids:
        try:
            _rescan_one(ct, [v for v in volumes if v.vmid == ct], cfg, dryrun, log)
        except CtkitError as err:
            if vmid is not None:
                raise
            print(f"CT {ct}: {err}", file=sys.stderr)
            failed.append(ct)
    if failed:
        raise CommandError(f"unable to rescan {len(failed)} container(s)")


def _recover(vmid: int | None, log: Log) -> None:
    """Undo first what a killed command left (a restore's ``lock: create`` and its new
    volumes), as every other command that meets the container does: rescan refused the dead
    command's lock, and offered its half-filled volumes as ``unusedN``. A dry run recovers
    too, as ``pct list`` does: nothing of it is the rescan's own change."""
    from shared.runtime import recovery

    if vmid is not None:
        recovery.recover(vmid, log)
    else:
        recovery.recover_all(log)


def _rescan_one(
    vmid: int, volumes: list[VolumeEntry], cfg: StorageConfig, dryrun: bool, log: Log
) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        changed = update_unused(conf, volumes, cfg, log)
        changed = update_disksize(conf, volumes, log) or changed
        if changed and not dryrun:
            store.save(conf)
