"""``pct move-volume``: a volume to another storage, or to another container (Proxmox's
move_volume). The source volume is never lost: a copy replaces it in the config only once it is
complete, and the old one stays as ``unusedN`` unless ``--delete`` removes it afterwards."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator

from shared import owner as owners
from shared import signals
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import (
    MountPoint,
    add_unused_volume,
    check_volume_key,
    drop_unused_volumes,
    used_volumes,
)
from shared.ctconfig.pending import DIGEST_MISMATCH, keys_naming
from shared.errors import CtkitError, LockError, NotFoundError, ParamError, StateError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery, unfinished
from shared.storage.api import volume_exists, volume_owner
from shared.storage.volumes import convert_to_base, free_volume, free_when_released, rename_volume

from .volcopy import copy_volume

Log = Callable[[str], None]
UNUSED_RE = re.compile(r"unused\d+")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _mountpoint(conf: Config, key: str) -> MountPoint:
    text = conf.values.get(key)
    if text is None:
        raise NotFoundError(f"volume '{key}' for container '{conf.vmid}' does not exist")
    if UNUSED_RE.fullmatch(key):
        return MountPoint(key, text, "", "volume", {})
    return conf.mountpoint(key)


def _in_snapshots(conf: Config, volid: str) -> bool:
    return any(volid in used_volumes(snap.values) for snap in conf.snapshots.values())


def _check_owner(vmid: int, volid: str, action: str | None) -> None:
    """Never delete or give away a volume that another container owns."""
    owner = volume_owner(volid)
    if action is not None and owner != vmid:
        raise StateError(f"can't {action} volume '{volid}' owned by another container ({owner})")


def _check_digest(conf: Config, digest: str | None, prefix: str = "") -> None:
    if digest is not None and digest != conf.digest:
        raise StateError(prefix + DIGEST_MISMATCH)


def move_volume(
    vmid: int,
    key: str,
    storage: str | None = None,
    target_vmid: int | None = None,
    target_key: str | None = None,
    *,
    delete: bool = False,
    bwlimit: int | None = None,
    digest: str | None = None,
    target_digest: str | None = None,
    log: Log = _stderr,
) -> None:
    check_volume_key("volume", key, unused=True)
    if target_key is not None:
        check_volume_key("target-volume", target_key, unused=True)
    if storage and target_vmid:
        msg = "either set 'storage' or 'target-vmid', but not both"
        raise ParamError({"target-vmid": msg, "storage": msg})
    if target_vmid is not None:
        reassign(vmid, key, target_vmid, target_key or key, digest, target_digest, log)
    elif storage:
        to_storage(vmid, key, storage, delete=delete, bwlimit=bwlimit, digest=digest, log=log)
    else:
        msg = "either set 'storage' or 'target-vmid'"
        raise ParamError({"storage": msg, "target-vmid": msg})


# --- to another storage ---------------------------------------------------------------------


def _lock_for_move(
    vmid: int, key: str, delete: bool, digest: str | None
) -> tuple[Config, owners.Owner]:
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        if lxcapi.is_running(vmid):
            raise StateError("cannot move volumes of a running container")
        if UNUSED_RE.fullmatch(key):
            raise StateError(
                f"cannot move volume '{key}', only configured volumes can be moved to "
                "another storage"
            )
        mp = _mountpoint(conf, key)
        if mp.type != "volume":
            raise StateError(f"cannot copy volumes of type {mp.type}")
        if delete and _in_snapshots(conf, mp.volume):
            raise StateError("you can't move a volume with snapshots and delete the source")
        if delete and (others := keys_naming(conf, mp.volume, skip=key)):
            raise StateError(
                f"you can't delete the source: {', '.join(others)} also uses '{mp.volume}'"
            )
        _check_owner(vmid, mp.volume, "delete" if delete else None)
        _check_digest(conf, digest)
        conf.set("lock", "disk")
        # a move killed at any instant: the next command frees its copy and drops the lock
        owner = owners.claim(vmid, unfinished.MOVE_OP, lock="disk")
        store.save(conf)
        return conf, owner


@contextlib.contextmanager
def _disk_lock_released(vmid: int, owner: owners.Owner, log: Log) -> Iterator[None]:
    try:
        yield
    finally:
        try:
            with config_lock(vmid):
                store.drop_lock(vmid, "disk")
            owners.release(owner)
        except CtkitError as err:
            log(f"unable to remove the 'disk' lock of CT {vmid} - {err}")


def to_storage(
    vmid: int,
    key: str,
    storage: str,
    *,
    delete: bool = False,
    bwlimit: int | None = None,
    digest: str | None = None,
    log: Log = _stderr,
) -> None:
    recovery.recover(vmid, log)  # a dead owner's record is undone, not replaced
    conf, owner = _lock_for_move(vmid, key, delete, digest)
    mp = _mountpoint(conf, key)
    old = mp.volume
    with _disk_lock_released(vmid, owner, log), signals.interruptible():
        log(f"moving volume '{key}' of CT {vmid} ({old}) to storage '{storage}'")
        recorded: list[str] = []
        try:
            copied = copy_volume(
                mp, conf, vmid, storage, bwlimit=bwlimit, log=log,
                allocated=lambda volid: recorded.append(_record_copy(vmid, volid)),
                reserved=lambda volid: unfinished.note_volumes(owner, [volid]),
            )  # fmt: skip
        except BaseException:
            with signals.held():
                _forget_copy(vmid, recorded, log)  # copy_volume freed it
            raise
        new = copied.volid
        committed = False
        try:
            if conf.is_template:
                new = convert_to_base(new)
            with config_lock(vmid):
                current = _still_locked(vmid)
                if current.values.get(key) != conf.values[key]:
                    raise LockError(f"CT {vmid}: config changed during the move, aborting")
                drop_unused_volumes(current.values, [copied.volid])
                current.set(key, mp.replace(volume=new, size=copied.size or mp.size).render())
                if delete:  # named nowhere once saved: on record, for a kill while freed
                    unfinished.note_replaced(owner, [old])
                else:
                    add_unused_volume(current.values, old)
                with signals.held():  # from the save on the config names the copy: it stays
                    store.save(current)
                    committed = True
            if delete:
                _delete_old(vmid, old, log)
        except BaseException:
            with signals.held():
                if not committed:  # a signal just after the save freed the copy it named
                    free_when_released(new, log)
                    _forget_copy(vmid, [copied.volid], log)
                elif delete and volume_exists(old):
                    # interrupted before the source was freed: named again, never by nothing
                    _name_unused(vmid, old)
            raise


def _still_locked(vmid: int) -> Config:
    current = store.load(vmid)
    if current.lock != "disk":
        raise LockError(f"CT {vmid}: config changed during the move, aborting")
    return current


def _record_copy(vmid: int, volid: str) -> str:
    """Name the volume being copied as ``unusedN`` of the (disk-locked) config before the copy
    starts: a move killed mid-copy (SIGKILL runs no cleanup) leaves no volume named by nothing;
    after ``pct unlock`` the partial copy shows as unused and ``pct set --delete`` frees it."""
    with config_lock(vmid):
        current = _still_locked(vmid)
        add_unused_volume(current.values, volid)
        store.save(current)
    return volid


def _forget_copy(vmid: int, volids: list[str], log: Log) -> None:
    """Drop the ``unusedN`` entries of copies that are gone again (one that could not be freed
    stays on record)."""
    gone = [volid for volid in volids if not volume_exists(volid)]
    if not gone:
        return
    try:
        with config_lock(vmid):
            current = store.load(vmid)
            drop_unused_volumes(current.values, gone)
            store.save(current)
    except CtkitError as err:
        log(f"unable to update the config of CT {vmid} - {err}")


def _delete_old(vmid: int, volid: str, log: Log) -> None:
    """The moved-away source; kept as ``unusedN`` if it cannot be freed."""
    try:
        free_volume(volid)
        return
    except CtkitError as err:
        log(f"WARN: unable to free '{volid}' - {err}")
    _name_unused(vmid, volid)


def _name_unused(vmid: int, volid: str) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        add_unused_volume(conf.values, volid)
        store.save(conf)


# --- to another container -------------------------------------------------------------------


def _check_reassign(
    source: Config, target: Config, key: str, target_key: str,
    digest: str | None, target_digest: str | None,
) -> MountPoint:  # fmt: skip
    if key == "rootfs" or target_key == "rootfs":
        raise StateError("Cannot move to/from 'rootfs'")
    if UNUSED_RE.fullmatch(key) and not UNUSED_RE.fullmatch(target_key):
        raise StateError("Moving an unused volume to a used one is not possible")
    store.check_lock(source)
    store.check_lock(target)
    if source.is_template or target.is_template:
        raise StateError("Can't move volumes from or to template CT")
    _check_digest(source, digest, f"Container {source.vmid}: ")
    _check_digest(target, target_digest, f"Container {target.vmid}: ")
    mp = _mountpoint(source, key)
    if target_key in target.values:
        raise StateError(
            f"Target volume key '{target_key}' is already in use for container '{target.vmid}'"
        )
    if mp.type != "volume":
        raise StateError("Cannot move a bindmount or device mount to another container")
    if _in_snapshots(source, mp.volume):
        raise StateError("Cannot move volume used by a snapshot to another container")
    if others := keys_naming(source, mp.volume, skip=key):
        raise StateError(
            f"Cannot move volume also used by {', '.join(others)} to another container"
        )
    _check_owner(source.vmid, mp.volume, "move")
    if lxcapi.is_running(source.vmid) and not UNUSED_RE.fullmatch(key):
        raise StateError(
            "Cannot move in-use volume while the source CT is running - detach or shutdown first"
        )
    return mp


def reassign(
    vmid: int,
    key: str,
    target_vmid: int,
    target_key: str,
    digest: str | None = None,
    target_digest: str | None = None,
    log: Log = _stderr,
) -> None:
    """Rename the volume to the target CT, name it in the target's config, then drop it from
    the source's: one step that TERM, INT and HUP wait for (a signal between the rename and the
    target's save left the volume named by nothing, and the source naming a name gone). Only a
    SIGKILL or a crash in those few system calls still can; ``pct rescan`` then finds it."""
    if not store.exists(target_vmid):
        raise NotFoundError(f"could not find CT {target_vmid}")
    with config_lock(vmid), contextlib.ExitStack() as stack:
        if target_vmid != vmid:
            stack.enter_context(config_lock(target_vmid))
        source = store.load(vmid)
        target = source if target_vmid == vmid else store.load(target_vmid)
        mp = _check_reassign(source, target, key, target_key, digest, target_digest)
        log(f"moving volume '{key}' from container '{vmid}' to '{target_vmid}'")
        where = target.pending if lxcapi.is_running(target_vmid) else target
        with signals.held():
            new = rename_volume(mp.volume, target_vmid)
            if UNUSED_RE.fullmatch(target_key):
                text = new
            else:
                moved = mp.replace(volume=new)
                text = MountPoint(
                    target_key, moved.volume, moved.path, moved.type, moved.options
                ).render()
            where.values[target_key] = text
            if target is not source:
                store.save(target)
            source.values.pop(key, None)
            log(f"removing volume '{key}' from container '{vmid}' config")
            store.save(source)
        log(f"target container '{target_vmid}' updated with '{target_key}'")
