"""What ``pct destroy`` removes, shared with the recovery that finishes a killed destroy.

``pct destroy`` locks the config ``lock: destroyed`` (the id stays reserved and every volume
listed while they go) and records its owner (:mod:`shared.owner`, op :data:`OWNER_OP`). A
destroy killed half-way has freed some volumes and not others: the container cannot be used
any more, and the next command that meets it finishes the destroy the user asked for
(:func:`finish`), rather than leave the lock for a human.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable

from .. import jobrefs, paths
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.mountpoints import volume_owner
from ..ctconfig.pending import referenced_volumes
from ..errors import CtkitError
from ..locks import config_lock
from ..storage.api import resolve_volume
from ..storage.config import StorageConfig, load_config
from ..storage.volid import VolName, parse_volume_id
from ..storage.volumes import free_volume, list_vmid_volumes
from .cgroups import CGroup
from .mounts import unmount_below

Log = Callable[[str], None]
OWNER_OP = "destroy"
LOCK = "destroyed"
UNREFERENCED, PURGE = "unreferenced", "purge"  # the options the record's mode keeps


def mode(*, unreferenced: bool, purge: bool) -> str:
    return ",".join(name for name, on in ((UNREFERENCED, unreferenced), (PURGE, purge)) if on)


def remove(conf: Config, mode: str, log: Log) -> None:
    """Everything of the container but its config, then the config: called under the config
    lock, with ``lock: destroyed`` saved."""
    vmid = conf.vmid
    options = mode.split(",")
    # first: a staging mount (or a pct mount's) keeps its volume busy, and freeing it would
    # fail for good
    unmount_below(paths.lxc_rootfs(vmid))
    _free_volumes(conf, UNREFERENCED in options, log)
    shutil.rmtree(paths.lxc_dir(vmid), ignore_errors=True)
    CGroup(vmid).remove_stale()  # empty cgroups an aborted start may have left
    with contextlib.suppress(FileNotFoundError):
        paths.firewall_conf(vmid).unlink()
    if PURGE in options:
        remove_from_jobs(vmid, log)
    store.remove(vmid)


def remove_from_jobs(vmid: int, log: Log) -> None:
    for job in jobrefs.remove_guest(vmid):
        log(f"removed CT {vmid} from backup job '{job}'")


def finish(vmid: int, mode: str, log: Log) -> bool:
    """Finish a killed destroy of ``vmid``; False when it had not locked the config yet (or
    had removed it already)."""
    with config_lock(vmid):
        conf = store.load_or_none(vmid)
        if conf is None or conf.lock != LOCK:
            return False
        remove(conf, mode, log)
    return True


def owned_volumes(conf: Config) -> list[str]:
    """Every volume the config names: current, pending, unused, and those only a snapshot still
    names (a mount point deleted or replaced after the snapshot). Proxmox leaves the last kind
    behind, named by nothing once the config is gone."""
    vols = referenced_volumes(conf)
    for snap in conf.snapshots.values():
        for mp in snap.mountpoints():
            if mp.type == "volume" and mp.volume not in vols:
                vols.append(mp.volume)
    return vols


def check_no_linked_clones(conf: Config) -> None:
    """Refuse to destroy (or replace) a template whose volumes are the base of another
    container's linked clone (Proxmox's refusal): the clone's config would name a base that no
    longer exists, and a new container of that id would pass for its base. Compared by the
    parsed base (storage, id, name), not by text: a template that is a linked clone itself
    names its volumes in the long form (``bt:A/base-A-disk-0/B/base-B-disk-0``), its clones
    in the short one (``bt:B/base-B-disk-0/C/...``), and it was destroyed under them."""
    if not conf.is_template:
        return
    cfg = load_config()
    bases = set()
    for volid in owned_volumes(conf):
        parsed = _parsed(volid, cfg)
        if parsed is not None and parsed[1].vmid == conf.vmid:
            bases.add((parsed[0], conf.vmid, parsed[1].name))
    for vmid in store.list_vmids():
        other = store.load_or_none(vmid) if vmid != conf.vmid else None
        for volid in owned_volumes(other) if other is not None else ():
            parsed = _parsed(volid, cfg)
            if parsed is None or parsed[1].basevmid is None:
                continue
            sid, vol = parsed
            if (sid, vol.basevmid, vol.basename) in bases:
                raise CtkitError(
                    f"base volume '{vol.basevmid}/{vol.basename}' is still in use by linked clones"
                )


def _parsed(volid: str, cfg: StorageConfig) -> tuple[str, VolName] | None:
    """(storage id, parsed name) of a volume; None for what does not parse (a storage gone)."""
    try:
        return parse_volume_id(volid)[0], resolve_volume(volid, cfg, enabled=False)[1]
    except CtkitError:
        return None


def _free_volumes(conf: Config, unreferenced: bool, log: Log) -> None:
    for volid in owned_volumes(conf):
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
                try:
                    free_volume(volid)
                except CtkitError as err:
                    log(f"unable to free volume '{volid}' - {err}")
