"""Storage callbacks the config layer needs to apply pending changes of a container."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from .. import signals
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.mountpoints import new_volume_size
from ..ctconfig.pending import Alloc
from ..errors import CtkitError, NotFoundError, StorageError
from ..storage.volumes import alloc_volume, free_volume, volume_size
from .guestview import config_root_ids

DEFAULT_STORAGE = "local"


def allocator(
    default_storage: str = DEFAULT_STORAGE,
) -> Callable[[str | None, float, str, Config], str]:
    """``alloc(storage, size_gib, key, conf) -> volid`` for ``STORAGE:SIZE`` mount points."""

    def alloc(storage: str | None, size_gib: float, key: str, conf: Config) -> str:
        uid, gid = config_root_ids(conf)
        return alloc_volume(
            storage or default_storage,
            conf.vmid,
            new_volume_size(size_gib),
            root_uid=uid,
            root_gid=gid,
        )

    return alloc


def recorded(alloc: Alloc) -> Alloc:
    """``alloc`` that saves the config naming each new volume before it returns: in the
    pending section, where Proxmox keeps a mount point that is not plugged in yet. Applying the
    change (a hot-plug, the final save) can be killed at any instant then, and the config still
    names the volume: ``pct start`` applies it, ``pct set --delete``/``--revert`` keeps it as
    ``unusedN``. The caller holds the config lock; ``conf`` is the config being applied."""

    def alloc_and_record(storage: str | None, size_gib: float, key: str, conf: Config) -> str:
        volid = alloc(storage, size_gib, key, conf)
        saved = conf.copy()
        mp = saved.pending.mountpoint(key)
        saved.pending.values[key] = mp.replace(
            volume=volid, size=new_volume_size(size_gib)
        ).render()
        try:
            store.save(saved)
        except BaseException:
            # named by nothing (a full /etc/pve): freed again, or each try left a volume behind
            with signals.held(), contextlib.suppress(CtkitError, OSError):
                free_volume(volid)
            raise
        return volid

    return alloc_and_record


def free(volid: str) -> None:
    if not free_volume(volid):
        raise NotFoundError(f"volume '{volid}' does not exist")


def size_of(volid: str) -> int | None:
    try:
        return volume_size(volid)
    except StorageError:
        return None
