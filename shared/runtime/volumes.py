"""Storage callbacks the config layer needs to apply pending changes of a container."""

from __future__ import annotations

from collections.abc import Callable

from ..ctconfig.config import Config
from ..ctconfig.mountpoints import new_volume_size
from ..errors import StorageError
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


def free(volid: str) -> None:
    if not free_volume(volid):
        raise StorageError(f"volume '{volid}' does not exist")


def size_of(volid: str) -> int | None:
    try:
        return volume_size(volid)
    except StorageError:
        return None
