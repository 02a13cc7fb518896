"""Container volumes by volume id: allocate, free, size, templates, snapshots, mounting."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import CtkitError, StorageError
from . import ext4mmp, loop
from .api import check_volume_content, get_storage, resolve_volume
from .base import Storage
from .config import StorageConfig
from .volid import parse_volume_id


def _storage(storage: Storage | str, cfg: StorageConfig | None) -> Storage:
    return storage if isinstance(storage, Storage) else get_storage(storage, cfg)


def _image(volid: str, cfg: StorageConfig | None) -> tuple[Storage, str]:
    store, vol = resolve_volume(volid, cfg)
    check_volume_content(vol, volid, "rootdir")
    return store, parse_volume_id(volid)[1]


def alloc_volume(
    storage: Storage | str,
    vmid: int,
    size_bytes: int,
    *,
    root_uid: int = 0,
    root_gid: int = 0,
    fmt: str | None = None,
    cfg: StorageConfig | None = None,
    reserved: Callable[[str], None] | None = None,
) -> str:
    """Allocate a container volume and return its volume id.

    dir: size > 0 → ext4-formatted sparse raw image, 0 → directory owned by root_uid:root_gid.
    btrfs: a subvolume (size = qgroup limit when quotas are on), or ``fmt="raw"`` for an image.
    ``reserved(volid)`` runs once the name is chosen, before the volume is made.
    """
    store = _storage(storage, cfg)
    store.check_enabled()
    if not store.has_content("rootdir"):
        raise StorageError(
            f"storage '{store.id}' does not allow content type 'rootdir' (Container)"
        )
    on_reserved = None if reserved is None else (lambda name: reserved(store.volid(name)))
    volname = store.alloc_volume(
        vmid, size_bytes, root_uid=root_uid, root_gid=root_gid, fmt=fmt, reserved=on_reserved
    )
    return store.volid(volname)


def free_volume(volid: str, cfg: StorageConfig | None = None) -> bool:
    """Delete a volume (btrfs: with its snapshots). False when it did not exist."""
    store, volname = _image(volid, cfg)
    return store.free_volume(volname)


# seconds to wait for a volume that is still in use a moment after its last user let go
RELEASE_PATIENCE = 5.0


def free_when_released(volid: str, log: Callable[[str], None]) -> bool:
    """Free a volume that may still be held for a moment (an autoclear loop device that the
    kernel releases asynchronously after the unmount, a copy of its mount in a mount namespace
    that is going away). Cleanup code calls it: a volume that stays busy or any other failure
    is logged, never raised, so the cleanup goes on; False then."""
    deadline = time.monotonic() + RELEASE_PATIENCE
    while True:
        try:
            free_volume(volid)
            return True
        except StorageError as err:
            if "is in use" not in str(err) or time.monotonic() >= deadline:
                log(f"unable to free volume '{volid}' - {err}")
                return False
        except (CtkitError, OSError) as err:
            log(f"unable to free volume '{volid}' - {err}")
            return False
        time.sleep(0.2)


def volume_size(volid: str, cfg: StorageConfig | None = None) -> int:
    store, volname = _image(volid, cfg)
    return store.volume_size(volname)


def resize_volume(volid: str, size_bytes: int, cfg: StorageConfig | None = None) -> None:
    """Grow a volume (raw: the file; the ext4 inside is grown with :mod:`loop` helpers)."""
    store, volname = _image(volid, cfg)
    _check_no_symlink(store, store.path_of(volname), volid, "resized")
    store.resize_volume(volname, size_bytes)


def _check_no_symlink(store: Storage, source: Path, volid: str, action: str) -> None:
    """ctkit makes no symlink below a storage's directory: one in a volume's place, or in place
    of its owner's directory (``images/<vmid>``), leads to a host file or to another
    container's volume, which a start mounted and a resize grew and checked."""
    try:
        below = source.relative_to(store.path).parts
    except ValueError:
        below = ()
    path = store.path
    for part in below[:-1]:
        path = path / part
        if path.is_symlink():
            raise StorageError(f"volume '{volid}' is behind a symlink ('{path}') - not {action}")
    if source.is_symlink():
        raise StorageError(f"volume '{volid}' is a symlink - not {action}")


def volume_format(volid: str, cfg: StorageConfig | None = None) -> str:
    """``raw`` or ``subvol``."""
    store, volname = _image(volid, cfg)
    return store.volume_format(volname)


def list_vmid_volumes(
    storage: Storage | str, vmid: int, cfg: StorageConfig | None = None
) -> list[str]:
    """Every volume id of ``vmid`` on a storage (for destroy --destroy-unreferenced-disks)."""
    return _storage(storage, cfg).list_vmid_volumes(vmid)


def convert_to_base(volid: str, cfg: StorageConfig | None = None) -> str:
    """Make a template's base volume; returns the new volume id."""
    store, volname = _image(volid, cfg)
    return store.volid(store.convert_to_base(volname))


def rename_volume(volid: str, target_vmid: int, cfg: StorageConfig | None = None) -> str:
    """Reassign a volume to ``target_vmid`` (renamed on its storage); returns the new id."""
    store, volname = _image(volid, cfg)
    return store.volid(store.rename_volume(volname, target_vmid))


def can_clone(volid: str, cfg: StorageConfig | None = None) -> bool:
    """Whether a linked clone of this volume is possible (a template's volume on btrfs)."""
    store, volname = _image(volid, cfg)
    return store.can_clone(volname)


def clone_volume(
    volid: str,
    vmid: int,
    snapshot: str | None = None,
    cfg: StorageConfig | None = None,
    *,
    reserved: Callable[[str], None] | None = None,
) -> str:
    """A linked clone of a template's volume for ``vmid`` (btrfs); returns the new volume id.
    ``reserved(volid)`` runs once the name is chosen, before the clone is made."""
    store, volname = _image(volid, cfg)
    on_reserved = None if reserved is None else (lambda name: reserved(store.volid(name)))
    return store.volid(store.clone_image(volname, vmid, snapshot, reserved=on_reserved))


# --- snapshots ------------------------------------------------------------------------------


def volume_has_feature(
    volid: str, feature: str, snapshot: str | None = None, cfg: StorageConfig | None = None
) -> bool:
    """Proxmox's volume_has_feature: ``snapshot``, ``clone``, ``template``, ``copy``, ..."""
    store, volname = _image(volid, cfg)
    return store.has_feature(feature, volname, snapshot)


def snapshot_create(volid: str, name: str, cfg: StorageConfig | None = None) -> None:
    store, volname = _image(volid, cfg)
    store.snapshot_create(volname, name)


def snapshot_rollback(
    volid: str, name: str, cfg: StorageConfig | None = None, *, size: int | None = None
) -> None:
    store, volname = _image(volid, cfg)
    store.snapshot_rollback(volname, name, size)


def snapshot_delete(volid: str, name: str, cfg: StorageConfig | None = None) -> None:
    store, volname = _image(volid, cfg)
    store.snapshot_delete(volname, name)


def snapshot_path(volid: str, name: str, cfg: StorageConfig | None = None) -> Path:
    """The read-only snapshot to mount or read (btrfs: ``<subvolume>@<name>``)."""
    store, volname = _image(volid, cfg)
    return store.snapshot_path(volname, name)


def list_snapshots(volid: str, cfg: StorageConfig | None = None) -> list[str]:
    store, volname = _image(volid, cfg)
    return store.list_snapshots(volname)


def needs_fsfreeze(volid: str, cfg: StorageConfig | None = None) -> bool:
    """Whether the file system inside must be frozen (FIFREEZE) while snapshotting."""
    store, volname = _image(volid, cfg)
    return store.needs_fsfreeze(volname)


def mounted_devices(volid: str, cfg: StorageConfig | None = None) -> set[int]:
    """The device numbers (``st_dev``) that the files of a mount of ``volid`` have: those of
    the loop devices a raw image is attached to, or the subvolume's own."""
    store, volname = _image(volid, cfg)
    path = store.path_of(volname, None)
    if store.volume_format(volname) == "raw":
        return loop.device_numbers(path)
    try:
        return {os.stat(path).st_dev}
    except OSError:
        return set()


# --- mounting -------------------------------------------------------------------------------


def mount_volume(
    volid: str,
    target: Path,
    *,
    read_only: bool = False,
    options: Sequence[str] = (),
    snapshot: str | None = None,
    cfg: StorageConfig | None = None,
) -> loop.Mounted:
    """Mount a volume (or, read-only, one of its snapshots) at ``target``."""
    store, volname = _image(volid, cfg)
    fmt = store.volume_format(volname)
    if snapshot is not None:
        source, read_only = store.snapshot_path(volname, snapshot), True
    else:
        source = store.path_of(volname)
    _check_no_symlink(store, source, volid, "mounted")
    if not source.exists():
        raise StorageError(f"volume '{volid}' does not exist")
    if snapshot is None:
        _clear_interrupted_check(store, fmt, source)
    return loop.mount_volume(source, target, fmt, read_only=read_only, options=options)


def clear_interrupted_check(volid: str, cfg: StorageConfig | None = None) -> bool:
    """Clear the MMP mark a killed e2fsck left on a raw volume (see :mod:`.ext4mmp`); True
    when there was one. Never on a shared storage: another host may be checking it."""
    store, volname = _image(volid, cfg)
    return _clear_interrupted_check(store, store.volume_format(volname), store.path_of(volname))


def _clear_interrupted_check(store: Storage, fmt: str, path: Path) -> bool:
    return fmt == loop.RAW and not store.shared and ext4mmp.clear_stale_fsck_mark(path)


@contextlib.contextmanager
def mounted_volume(
    volid: str,
    target: Path,
    *,
    read_only: bool = False,
    options: Sequence[str] = (),
    snapshot: str | None = None,
    cfg: StorageConfig | None = None,
) -> Iterator[loop.Mounted]:
    """Mount for a block; always unmounts (and releases the loop device) on the way out."""
    handle = mount_volume(
        volid, target, read_only=read_only, options=options, snapshot=snapshot, cfg=cfg
    )
    try:
        yield handle
    finally:
        handle.unmount()


def grow_filesystem(volid: str, cfg: StorageConfig | None = None) -> None:
    """After resize_volume: grow the ext4 of a raw volume (online when mounted)."""
    store, volname = _image(volid, cfg)
    if store.volume_format(volname) == "raw":
        loop.resize_fs(store.path_of(volname))
