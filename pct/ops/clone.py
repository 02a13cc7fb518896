"""``pct clone``: a new container from an existing one or a template (Proxmox's clone_vm).

Full clones copy every volume (:mod:`.volcopy`); linked clones of a template's btrfs volumes are
writable snapshots that share all extents with the base. The source holds ``lock: disk`` and
the new config ``lock: create`` for the whole task; a failure frees every new volume and removes
the new config, so nothing of the clone is left. Both ids record this process as their owner:
a clone killed at any instant is undone the same way by the next command that meets either
(:mod:`shared.runtime.recovery`, :mod:`shared.runtime.unfinished`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from shared import owner as owners
from shared import paths, preload, signals
from shared.ctconfig import store
from shared.ctconfig.config import Config, Section
from shared.ctconfig.mountpoints import MountPoint, add_unused_volume, drop_unused_volumes
from shared.errors import AlreadyExistsError, CtkitError, NotFoundError, ParamError, StateError
from shared.formats.types import FormatError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery, unfinished
from shared.runtime.guestview import guest_config
from shared.runtime.namespace import private_mounts
from shared.storage.api import get_storage
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import can_clone, clone_volume, free_when_released

from .provision import (
    CREATE_LOCK,
    GUEST_MODULES,
    create_locked_config,
    exists_message,
    prefixed,
    remove_locked_config,
    remove_staging_dirs,
    staged,
)
from .restore_plan import with_new_mac
from .volcopy import copy_volume

Log = Callable[[str], None]
DROPPED = ("lock", "snapshots", "parent", "snaptime", "snapstate", "template", "digest")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class CloneRequest:
    vmid: int
    newid: int
    full: bool | None = None  # default: full unless the source is a template
    storage: str | None = None
    hostname: str | None = None
    description: str | None = None
    snapname: str | None = None
    target: str | None = None
    bwlimit: int | None = None


@dataclass
class Plan:
    conf: Config  # the new config, without volumes yet
    volumes: list[MountPoint]  # rootfs first
    full: bool
    source: Config  # the source config: its id map owns the files


def check_target(target: str | None) -> None:
    """ctkit manages one node: only this node (or ``localhost``) is a valid target."""
    if target and target not in (paths.node_name(), "localhost"):
        raise NotFoundError(
            f"no such cluster node '{target}'",
            hint="ctkit manages a single node; copy the CT with vzdump and pct restore instead",
        )


def _source_values(conf: Config, snapname: str | None) -> Section:
    if snapname is None:
        return conf
    if snapname not in conf.snapshots:
        raise NotFoundError(f"snapshot '{snapname}' does not exist")
    return conf.snapshots[snapname]


def plan(src: Config, req: CloneRequest, running: bool) -> Plan:
    """Proxmox's checks and the new config: every key but volumes, unused and snapshot data,
    a new MAC for every interface, hostname and description as given."""
    full = req.full if req.full is not None else not src.is_template
    if req.storage is not None and not full:
        raise ParamError({"storage": "parameter 'storage' not allowed for linked clones"})
    values = _source_values(src, req.snapname)
    new = Config(req.newid)
    volumes = []
    for mp in sorted(values.mountpoints(strict=True), key=lambda m: m.key != "rootfs"):
        if mp.type != "volume":
            raise CtkitError(f"unable to clone mountpoint '{mp.key}' (type {mp.type})")
        if full and running and req.snapname is None:
            raise StateError("Full clone of a running container is only possible from a snapshot")
        if not full and not can_clone(mp.volume):
            raise CtkitError(
                f"Linked clone feature for '{mp.volume}' is not available",
                hint="linked clones need a template on btrfs; use '--full 1' for a copy",
            )
        volumes.append(mp)
    for key, text in values.values.items():
        if key in DROPPED or key == "rootfs" or key.startswith(("mp", "unused")):
            continue
        new.values[key] = with_new_mac(text) if key.startswith("net") else text
    new.lxc = list(values.lxc)
    if req.hostname:
        try:
            new.set("hostname", req.hostname)
        except FormatError as err:  # as pct set says it (a traceback, exit 1)
            raise ParamError({"hostname": str(err)}) from None
    if req.description:
        new.description = req.description
    return Plan(new, volumes, full, src)


def _lock_source(vmid: int) -> tuple[Config, bool, owners.Owner]:
    """``lock: disk`` on the source, this process on record as its owner: a clone killed at
    any instant leaves a lock the next command that meets the source drops."""
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        conf.set("lock", "disk")
        # the same op as the new id's record: its undoing acts on a 'create' lock alone, so
        # here recovery only drops the 'disk' lock
        owner = owners.claim(vmid, unfinished.CLONE, lock="disk")
        store.save(conf)
        return conf, lxcapi.is_running(vmid), owner


def _unlock_source(vmid: int, owner: owners.Owner, log: Log) -> None:
    try:
        with config_lock(vmid):
            store.drop_lock(vmid, "disk")
        owners.release(owner)
    except CtkitError as err:
        log(f"Failed to remove source CT config lock - {err}")


def _locked_new_config(newid: int) -> Config:
    conf = store.load(newid)
    if conf.lock != CREATE_LOCK:
        raise CtkitError("Lost 'create' config lock, aborting.")
    return conf


def _record_copy(newid: int, volid: str) -> None:
    """Name a volume that is being copied in the new config as ``unusedN`` (not yet a mount
    point: its content is not complete): a clone killed mid-copy leaves a config that names
    it, so ``pct unlock`` and ``pct destroy`` of the new CT free it."""
    with config_lock(newid):
        conf = _locked_new_config(newid)
        add_unused_volume(conf.values, volid)
        store.save(conf)


def _set_volume(newid: int, mp: MountPoint) -> Config:
    """Record a finished volume in the new config at once (a failure then frees it by name)."""
    with config_lock(newid):
        conf = _locked_new_config(newid)
        drop_unused_volumes(conf.values, [mp.volume])  # recorded while it was copied
        conf.set(mp.key, mp.render())
        store.save(conf)
        return conf


def clone(req: CloneRequest, *, log: Log = _stderr) -> None:
    check_target(req.target)
    if req.storage is not None:
        get_storage(req.storage).check_enabled()
    # what a killed command left on either id is undone first (a killed clone's among it)
    for vmid in (req.vmid, req.newid):
        recovery.recover(vmid, log)
    if store.exists(req.newid):
        raise AlreadyExistsError(exists_message(req.newid))
    src, running, src_owner = _lock_source(req.vmid)
    try:
        job = plan(src, req, running)
        # a value the guest setup cannot read fails the clone before any volume is copied
        guest_config(job.conf)
        new_owner = create_locked_config(job.conf, owner_op=unfinished.CLONE)
    except BaseException:
        _unlock_source(req.vmid, src_owner, log)
        raise
    private_mounts()
    created: list[str] = []
    # TERM/HUP/INT interrupt the copy; the cleanup below runs to its end whatever arrives
    with signals.interruptible():
        try:
            _run(req, job, created, new_owner, log)
        except BaseException as err:
            with signals.held():
                if not _finished(req.newid):  # a signal just after the last save: it stands
                    for volid in created:
                        free_when_released(volid, log)
                    remove_locked_config(req.newid, log)
                remove_staging_dirs(req.newid)
            if isinstance(err, CtkitError):
                raise prefixed(err, "clone failed: ") from None
            raise
        finally:
            with signals.held():
                if new_owner is not None:
                    owners.release(new_owner)
                _unlock_source(req.vmid, src_owner, log)


def _finished(newid: int) -> bool:
    """Whether the clone's config was saved for good (its create lock dropped): its volumes
    are the new container's then, whatever interrupted the clone after."""
    with contextlib.suppress(CtkitError):
        conf = store.load_or_none(newid)
        return conf is not None and conf.lock != CREATE_LOCK
    return False


def _copy(
    req: CloneRequest,
    job: Plan,
    mp: MountPoint,
    created: list[str],
    note: Callable[[str], None],
    log: Log,
) -> MountPoint:
    """The mount point ``mp`` on its new volume, a full copy or a linked clone."""
    if job.full:
        log(f"create full clone of mountpoint {mp.key} ({mp.volume})")
        storage = req.storage or parse_volume_id(mp.volume)[0]
        copied = copy_volume(
            mp, job.source, req.newid, storage,
            snapshot=req.snapname, bwlimit=req.bwlimit, log=log,
            allocated=lambda volid: _record_copy(req.newid, volid), reserved=note,
        )  # fmt: skip
        created.append(copied.volid)
        return mp.replace(volume=copied.volid, size=copied.size or mp.size)
    log(f"create linked clone of mount point {mp.key} ({mp.volume})")
    volid = clone_volume(mp.volume, req.newid, req.snapname, reserved=note)
    created.append(volid)
    return mp.replace(volume=volid)


def _run(
    req: CloneRequest, job: Plan, created: list[str], owner: owners.Owner | None, log: Log
) -> None:
    log(f"creating a clone of container {req.vmid} with ID {req.newid}")
    conf = job.conf

    def note(volid: str) -> None:  # on the new id's record before it is formatted
        unfinished.note_volumes(owner, [*created, volid])

    # a full clone waits on cp: the fixups' guest modules load meanwhile
    with preload.loading(*GUEST_MODULES) if job.full else contextlib.nullcontext():
        for mp in job.volumes:
            conf = _set_volume(req.newid, _copy(req, job, mp, created, note, log))
    from shared.guest.setup import GuestSetup  # GUEST_MODULES

    with staged(conf) as tree:
        setup = GuestSetup.for_rootfs(
            tree.target, guest_config(conf), log=log, warn=lambda w: log(f"WARN: {w}")
        )
        setup.clone_fixup()
    remove_staging_dirs(req.newid)
    with config_lock(req.newid):
        final = store.load(req.newid)
        if final.lock != CREATE_LOCK:
            raise CtkitError("Lost 'create' config lock, aborting.")
        final.delete("lock")
        store.save(final)
