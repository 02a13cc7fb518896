"""Undo a ``pct create``, ``restore``, ``clone`` or ``move-volume`` killed before it finished.

A SIGKILL (or a crash) runs no cleanup: the id stays locked with ``lock: create``, and the new
volumes stay allocated. These commands record their owner (:mod:`shared.owner`, the command's
name as op, one of :data:`OPS`) as they lock the id, and add each volume to the record as soon
as its name is taken. The next command that meets the container
(:mod:`shared.runtime.recovery`) then does what their own failure path does: it frees those
volumes and removes the new container's config; for ``restore --force`` (the record's mode
:data:`REPLACE`) it keeps the old container, dropping only the ``unusedN`` entries of the new
volumes and the lock. A killed ``move-volume`` (op :data:`MOVE_OP`, under ``lock: disk``)
loses its partial copy the same way (:func:`undo_move`), and so does a new mount point's
volume that a killed ``pct set`` (or a start applying it) was formatting (:func:`undo_alloc`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from .. import owner as owners
from .. import paths
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.mountpoints import drop_unused_volumes, used_volumes, volume_owner
from ..ctconfig.pending import referenced_volumes
from ..errors import CtkitError, StorageError
from ..locks import config_lock
from ..storage import loop
from ..storage.api import volume_exists, volume_path
from ..storage.volumes import free_when_released
from .template import base_twin
from .volumes import ALLOC_OP

Log = Callable[[str], None]
CREATE, RESTORE, CLONE = OPS = ("create", "restore", "clone")
MOVE_OP = "move-volume"
CREATE_LOCK = "create"
REPLACE = "force"  # the record's mode when a restore replaces an existing container


def _in_use(conf: Config) -> set[str]:
    """The volumes a kept config mounts, now, pending, or in a snapshot."""
    sections = [conf.values, conf.pending.values, *(s.values for s in conf.snapshots.values())]
    return {volid for values in sections for volid in used_volumes(values)}


def _not_made(conf: Config, vmid: int, made: Sequence[str]) -> list[str]:
    return [v for v in referenced_volumes(conf) if volume_owner(v) == vmid and v not in made]


def _made(dead: owners.Owner, kept: set[str]) -> list[str]:
    """The volumes the record lists that the id owns and ``kept`` lacks, each followed by its
    base twin when that exists: a restore of a template (or a move-volume of one) renames each
    new volume ``vm-`` → ``base-`` before its commit, and the record knows the old name only."""
    made: list[str] = []
    for volid in dead.volumes.split():
        for name in (volid, base_twin(volid)):
            if name in made or name in kept or volume_owner(name) != dead.vmid:
                continue
            if name == volid or volume_exists(name):
                made.append(name)
    return made


def claim(vmid: int, op: str, *, replacing: bool = False) -> owners.Owner:
    """Record this process as the owner of the id it is about to lock for creation."""
    return owners.claim(vmid, op, lock=CREATE_LOCK, mode=REPLACE if replacing else "")


def note_volumes(owner: owners.Owner | None, volids: Sequence[str]) -> None:
    """The volumes allocated so far (each is noted right after its allocation)."""
    if owner is not None:
        owners.update(owner, volumes=" ".join(volids))


def note_replaced(owner: owners.Owner | None, volids: Sequence[str]) -> None:
    """The volumes a ``restore --force`` (of the replaced container) or ``move-volume --delete``
    (its source) frees once it committed: from then on no config names them."""
    if owner is not None:
        owners.update(owner, replaced=" ".join(volids))


def undo(dead: owners.Owner, log: Log) -> None:
    """Undo a dead create or restore that still holds its ``lock: create``; one that never
    locked the id left nothing to undo, one that finished nothing but (``restore --force``)
    the old volumes it was freeing."""
    if dead.op not in OPS:
        return
    vmid = dead.vmid
    what = f"pct {dead.op}" + (" --force" if dead.mode == REPLACE else "")
    with config_lock(vmid):
        conf = store.load_or_none(vmid)
        if conf is None:
            return
        committed = conf.lock != CREATE_LOCK
        left = _replaced_left(dead, conf) if committed and dead.mode == REPLACE else []
        # never a volume the old container of a restore --force uses, whatever the record says
        kept = _in_use(conf) if dead.mode == REPLACE else set()
    if committed:
        _free_replaced(vmid, left, log, "of the container pct restore --force replaced")
        return
    made = _made(dead, kept)
    _release_loop_devices(made)
    freed = []
    for volid in made:
        if free_when_released(volid, log):
            freed.append(volid)
            log(f"CT {vmid}: freed volume '{volid}' the unfinished {what} allocated")
    if len(freed) < len(made):  # the config and the record stay, for the next command
        raise StorageError(f"{len(made) - len(freed)} new volume(s) could not be freed")
    with config_lock(vmid):
        conf = store.load_or_none(vmid)
        if conf is None or conf.lock != CREATE_LOCK:
            return
        if dead.mode == REPLACE:
            drop_unused_volumes(conf.values, freed)
            conf.delete("lock")
            store.save(conf)
            log(f"CT {vmid}: kept the container the unfinished restore was to replace")
        elif _not_made(conf, vmid, made):  # never leave a volume of the id named by nothing
            conf.delete("lock")
            store.save(conf)
            log(
                f"CT {vmid}: kept the config, it names volumes the unfinished {what} "
                "did not allocate"
            )
        else:
            store.remove(vmid)
            for path in (paths.lxc_rootfs(vmid), paths.lxc_dir(vmid)):
                with contextlib.suppress(OSError):
                    path.rmdir()
            log(f"CT {vmid}: removed the config of the unfinished {what}")


def _release_loop_devices(made: Sequence[str]) -> None:
    """Detach the loop devices left on a dead command's new raw volumes: an older ctkit killed
    between a device's attach and its mount left it attached for good (now a device is
    autoclear from its attach). A device still mounted somewhere is only marked autoclear by
    this, and the volume stays in use."""
    for volid in made:
        try:
            path = volume_path(volid)
        except CtkitError:  # its storage is gone: freeing it fails and says so
            continue
        if path.is_file() and not path.is_symlink():
            for dev in loop.devices_for(path):
                with contextlib.suppress(CtkitError):
                    loop.detach(dev, path)


def _replaced_left(dead: owners.Owner, conf: Config) -> list[str]:
    """The replaced volumes of the record that the id owns and its config names nowhere."""
    named = {*referenced_volumes(conf), *_in_use(conf)}
    return [v for v in dead.replaced.split() if volume_owner(v) == dead.vmid and v not in named]


def _free_replaced(vmid: int, volids: Sequence[str], log: Log, what: str) -> None:
    freed = [volid for volid in volids if volume_exists(volid) and free_when_released(volid, log)]
    for volid in freed:
        log(f"CT {vmid}: freed volume '{volid}' {what}")
    left = [volid for volid in volids if volume_exists(volid)]
    if left:  # the record stays, for the next command
        raise StorageError(f"{len(left)} replaced volume(s) could not be freed")


def undo_move(dead: owners.Owner, log: Log) -> None:
    """Free the copy a dead ``move-volume`` was writing and drop its ``unusedN`` entry; a copy
    the config mounts already (the move was committed) is kept. The lock goes afterwards
    (recovery's lock step)."""
    if dead.op != MOVE_OP:
        return
    vmid = dead.vmid
    with config_lock(vmid):
        conf = store.load_or_none(vmid)
        if conf is None or conf.lock != "disk":
            return
        kept = _in_use(conf)
        left = _replaced_left(dead, conf)  # a committed move --delete's source
    made = _made(dead, kept)
    _release_loop_devices(made)
    freed = [volid for volid in made if free_when_released(volid, log)]
    if freed:
        with config_lock(vmid):
            conf = store.load(vmid)
            drop_unused_volumes(conf.values, freed)
            store.save(conf)
    for volid in freed:
        log(f"CT {vmid}: freed volume '{volid}' the unfinished pct move-volume was copying")
    if len(freed) < len(made):
        raise StorageError(f"{len(made) - len(freed)} partial copies could not be freed")
    _free_replaced(vmid, left, log, "pct move-volume --delete had moved away")


def undo_alloc(dead: owners.Owner, log: Log) -> None:
    """Free the new volume a dead command was making for a mount point, unless the config names
    it: its name is saved there as soon as it is made, so a volume named by nothing is a
    half-made one (mkfs killed) or one whose name never reached the config."""
    if dead.op != ALLOC_OP:
        return
    with config_lock(dead.vmid):  # no command can name it meanwhile
        conf = store.load_or_none(dead.vmid)
        kept = set() if conf is None else {*referenced_volumes(conf), *_in_use(conf)}
        made = _made(dead, kept)
        _release_loop_devices(made)
        freed = [volid for volid in made if free_when_released(volid, log)]
    for volid in freed:
        log(f"CT {dead.vmid}: freed volume '{volid}' the unfinished allocation had made")
    if len(freed) < len(made):  # the record stays, for the next command
        raise StorageError(f"{len(made) - len(freed)} new volume(s) could not be freed")
