"""Storage callbacks the config layer needs to apply pending changes of a container."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from .. import owner as owners
from .. import signals
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.mountpoints import new_volume_size
from ..ctconfig.pending import Alloc
from ..errors import CtkitError, LockError, NotFoundError
from ..storage.api import volume_exists
from ..storage.volumes import alloc_volume, free_volume, volume_size
from .guestview import config_root_ids

DEFAULT_STORAGE = "local"
ALLOC_OP = "allocate"  # the owner record of a mount point's new volume, until the config names it


def allocator(
    default_storage: str = DEFAULT_STORAGE,
    reserved: Callable[[str], None] | None = None,
) -> Callable[[str | None, float, str, Config], str]:
    """``alloc(storage, size_gib, key, conf) -> volid`` for ``STORAGE:SIZE`` mount points;
    ``reserved(volid)`` runs once a new volume's name is taken, before it exists."""

    def alloc(storage: str | None, size_gib: float, key: str, conf: Config) -> str:
        uid, gid = config_root_ids(conf)
        return alloc_volume(
            storage or default_storage,
            conf.vmid,
            new_volume_size(size_gib),
            root_uid=uid,
            root_gid=gid,
            reserved=reserved,
        )

    return alloc


def recorded(default_storage: str = DEFAULT_STORAGE) -> Alloc:
    """An allocator that saves the config naming each new volume before it returns: in the
    pending section, where Proxmox keeps a mount point that is not plugged in yet. Applying the
    change (a hot-plug, the final save) can be killed at any instant then, and the config still
    names the volume: ``pct start`` applies it, ``pct set --delete``/``--revert`` keeps it as
    ``unusedN``. Until then (mkfs takes a while) an owner record names it: the next command's
    recovery frees a volume that a killed run left named by no config. The caller holds the
    config lock; ``conf`` is the config being applied."""

    def alloc_and_record(storage: str | None, size_gib: float, key: str, conf: Config) -> str:
        with _allocating(conf.vmid) as note:
            volid = allocator(default_storage, note)(storage, size_gib, key, conf)
            saved = conf.copy()
            mp = saved.pending.mountpoint(key)
            saved.pending.values[key] = mp.replace(
                volume=volid, size=new_volume_size(size_gib)
            ).render()
            try:
                store.save(saved)
            except BaseException:
                # named by nothing (a full /etc/pve): freed again, or each try left a volume
                # behind (one that cannot be freed stays on the record, for the recovery)
                with signals.held(), contextlib.suppress(CtkitError, OSError):
                    free_volume(volid)
                raise
        return volid

    return alloc_and_record


@contextlib.contextmanager
def _allocating(vmid: int) -> Iterator[Callable[[str], None]]:
    """An owner record (op :data:`ALLOC_OP`) for one allocation; the callback notes the new
    volume on it. It goes once the volume is named by the config, or is gone again. Another
    record is never replaced: a live owner's refuses (its lock), and this process's own (a
    stop-mode backup starting its guest) or a dead one's not yet recovered leaves the
    allocation unrecorded, as before."""
    current = owners.read(vmid)
    if current is not None:
        if current.pid != os.getpid() and owners.alive(current):
            raise LockError(f"CT is locked ({current.lock or current.op})")
        yield lambda _volid: None
        return
    owner = owners.claim(vmid, ALLOC_OP)
    noted: list[str] = []

    def note(volid: str) -> None:
        noted.append(volid)
        owners.update(owner, volumes=volid)

    try:
        yield note
    except BaseException:
        if any(volume_exists(volid) for volid in noted):
            raise  # the recovery frees it once this process has ended
        owners.release(owner)
        raise
    owners.release(owner)


def free(volid: str) -> None:
    if not free_volume(volid):
        raise NotFoundError(f"volume '{volid}' does not exist")


def size_of(volid: str) -> int | None:
    """The volume's size; a StorageError (no such volume) is the caller's warning, as Proxmox's
    'Could not rescan volume size'."""
    return volume_size(volid)
