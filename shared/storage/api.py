"""Storage operations by storage id and volume id, with Proxmox's checks and messages.

Storage lookups, templates (pveam) and backups (vzdump). Container volumes are in
:mod:`shared.storage.volumes`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import atomic
from ..errors import ArchiveError, CtkitError, NotFoundError, ParamError, StorageError
from ..formats.archivename import VERIFY_EXT, ArchiveInfo, archive_info
from ..formats.types import FormatError, StorageId
from . import listing  # resticbackups (and restic's driver) only where a restic storage is
from .base import Storage
from .config import StorageConfig, load_config
from .listing import VolumeEntry
from .resticplugin import ResticStorage
from .volid import VolName, is_volume_id, parse_volname, parse_volume_id


def check_storage_id(sid: str, param: str = "storage") -> str:
    """Validate a storage ID: ParamError ``<param>: invalid format - storage ID ...``."""
    try:
        return str(StorageId.parse(sid))
    except FormatError as err:
        raise ParamError({param: str(err)}) from None


def get_storage(
    sid: str,
    cfg: StorageConfig | None = None,
    *,
    enabled: bool = True,
    param: str = "storage",
) -> Storage:
    """A configured storage: ID format, ``does not exist``, then ``is disabled``/node checks."""
    check_storage_id(sid, param)
    store = (cfg or load_config()).storage(sid)
    if enabled:
        store.check_enabled()
    return store


def resolve_volume(
    volid: str, cfg: StorageConfig | None = None, *, enabled: bool = True
) -> tuple[Storage, VolName]:
    """The storage and parsed volume name of a volume id."""
    sid, volname = parse_volume_id(volid)
    store = (cfg or load_config()).storage(sid)
    vol = store.parse_volname(volname)
    if enabled:
        store.check_enabled()
    return store, vol


def check_volume_content(vol: VolName, volid: str, vtype: str) -> None:
    """``unable to use volume <volid> - content type needs to be '<t>'`` (rootdir takes images)."""
    if vol.vtype != vtype and not (vtype == "rootdir" and vol.vtype == "images"):
        raise StorageError(f"unable to use volume {volid} - content type needs to be '{vtype}'")


def volume_path(volid: str, snapshot: str | None = None, cfg: StorageConfig | None = None) -> Path:
    """The file-system path of a volume (or of one of its snapshots)."""
    sid, volname = parse_volume_id(volid)
    return (cfg or load_config()).storage(sid).path_of(volname, snapshot)


def volume_exists(volid: str) -> bool:
    """Whether a volume is on its storage (one that cannot be resolved is not)."""
    try:
        return volume_path(volid).exists()
    except (CtkitError, OSError):
        return False


def volume_owner(volid: str) -> int | None:
    """The VMID that owns a volume (images; backups with a vzdump name), if any."""
    return parse_volname(parse_volume_id(volid)[1]).vmid


# --- templates (pveam) ----------------------------------------------------------------------


def list_templates(sid: str, cfg: StorageConfig | None = None) -> list[VolumeEntry]:
    """``pveam list``: checks, then templates sorted by volid (case-insensitive)."""
    return listing.list_templates(get_storage(sid, cfg))


def template_dir(sid: str, cfg: StorageConfig | None = None) -> Path:
    """Where ``pveam download`` stores templates (created if missing)."""
    store = get_storage(sid, cfg)
    if not store.has_content("vztmpl"):
        raise StorageError(f"storage '{sid}' does not support templates")
    store.activate()
    directory = store.subdir("vztmpl")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _existing_file(volid: str, path: Path) -> Path:
    if not path.is_file():
        raise NotFoundError(f"can't find file '{volid}'")
    return path


def remove_template(volid: str, cfg: StorageConfig | None = None) -> None:
    """``pveam remove``: volume ids only, never an arbitrary path (pveam §6)."""
    if not is_volume_id(volid):
        raise StorageError(
            f"unable to parse volume ID '{volid}'",
            hint="give a volume ID such as 'local:vztmpl/<file>'; paths are not accepted",
        )
    store, vol = resolve_volume(volid, cfg, enabled=False)
    check_volume_content(vol, volid, "vztmpl")
    store.check_enabled()
    path = _existing_file(volid, store.subdir("vztmpl") / vol.name)
    try:
        path.unlink()
    except FileNotFoundError:  # a remove at the same time took it first
        raise NotFoundError(f"can't find file '{volid}'") from None


def resolve_template(ref: str, cfg: StorageConfig | None = None) -> Path:
    """A template given as volume id (``local:vztmpl/x.tar.zst``) or as a file path."""
    if not is_volume_id(ref):
        path = Path(ref)
        # os.path says no to any error (a name too long), where Path.is_file() raised
        if not os.path.isfile(path):
            raise NotFoundError(f"can't find file '{ref}'")
        return path
    store, vol = resolve_volume(ref, cfg)
    check_volume_content(vol, ref, "vztmpl")
    return _existing_file(ref, store.subdir("vztmpl") / vol.name)


# --- backups (vzdump) -----------------------------------------------------------------------


def backup_storage(
    sid: str, cfg: StorageConfig | None = None, *, refusal: str | None = None
) -> Storage:
    """A storage with content ``backup``; ``refusal`` is the error for one without (Proxmox's
    prune words it otherwise than a backup or a listing)."""
    store = get_storage(sid, cfg)
    if not store.has_content("backup"):
        raise StorageError(refusal or f"can't use storage '{sid}' for backups - wrong content type")
    return store


def backup_dir(sid: str, cfg: StorageConfig | None = None) -> Path:
    """The dump directory of a backup storage (created if missing)."""
    store = backup_storage(sid, cfg)
    store.activate()
    directory = store.subdir("backup")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def list_backups(
    sid: str,
    vmid: int | None = None,
    subtype: str | None = None,
    cfg: StorageConfig | None = None,
) -> list[VolumeEntry]:
    store = get_storage(sid, cfg)
    if isinstance(store, ResticStorage):
        from . import resticbackups

        return resticbackups.list_backups(store, vmid, subtype)
    return listing.list_backups(store, vmid, subtype)


def restic_volume(volid: str, cfg: StorageConfig | None = None) -> tuple[ResticStorage, str] | None:
    """(storage, volume name) when ``volid`` is a backup on a restic storage, else None."""
    if not is_volume_id(volid):
        return None
    sid, volname = parse_volume_id(volid)
    store = (cfg or load_config()).storage(sid)
    if not isinstance(store, ResticStorage):
        return None
    store.check_enabled()
    from . import resticbackups

    resticbackups.parse_volname(volname)
    return store, volname


def reclaim_space(sid: str, cfg: StorageConfig | None = None) -> None:
    """After backups were removed: a restic repository deletes the data no snapshot uses any
    more (archives on dir storages are gone with their files already)."""
    store = get_storage(sid, cfg)
    if isinstance(store, ResticStorage):
        from . import resticbackups

        resticbackups.reclaim_space(store)


def backup_path(volid: str, cfg: StorageConfig | None = None) -> Path:
    store, vol = resolve_volume(volid, cfg)
    check_volume_content(vol, volid, "backup")
    return store.subdir("backup") / vol.name


def _aux_info(path: Path) -> ArchiveInfo | None:
    try:
        return archive_info(path.name)
    except ArchiveError:
        return None


def archive_remove(path: Path) -> list[str]:
    """Delete an archive with its ``.log``, ``.notes`` and ``.verify``; refuse a protected one.
    Returns a warning for each companion that could not be removed (a directory at its name):
    the archive is gone, so that is no failed removal, as in Proxmox."""
    if listing.is_protected(path):
        raise StorageError(f"cannot remove protected archive '{path}'")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    info = _aux_info(path)
    companions: dict[str, str | None] = {"verification": f"{path.name}{VERIFY_EXT}"}
    if info:
        companions |= {"log": info.logfilename, "notes": info.notesfilename}
    warnings = []
    for kind, name in companions.items():
        if not name:
            continue
        aux = path.parent / name
        try:
            aux.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:  # Proxmox's wording
            warnings.append(f"Removing {kind} file '{aux}' failed: {err.strerror}")
    return warnings


def remove_backup(
    volid: str, cfg: StorageConfig | None = None, *, reclaim: bool = True, gone_ok: bool = False
) -> list[str]:
    """Remove a backup volume (``can't find file`` when it is not there, unless ``gone_ok``:
    a prune that marked it finds it removed by another prune meanwhile, which Proxmox's
    archive_remove takes as done); on a restic storage the snapshot is forgotten and, with
    ``reclaim``, its data pruned. Returns archive_remove's warnings."""
    if restic := restic_volume(volid, cfg):
        from . import resticbackups

        resticbackups.remove(*restic, reclaim=reclaim, gone_ok=gone_ok)
        return []
    path = backup_path(volid, cfg)
    try:
        return archive_remove(_existing_file(volid, path))
    except NotFoundError:
        # a FIFO or a directory at the name is not a backup gone: still refused
        if not gone_ok or os.path.lexists(path):
            raise
    return []


def set_backup_notes(volid: str, text: str, cfg: StorageConfig | None = None) -> None:
    """Write ``<archive>.notes`` (an empty text deletes it)."""
    if restic := restic_volume(volid, cfg):
        from . import resticbackups

        resticbackups.set_notes(*restic, text)
        return
    path = _existing_file(volid, backup_path(volid, cfg))
    notes = Path(f"{path}.notes")
    if text == "":
        with contextlib.suppress(FileNotFoundError):
            notes.unlink()
        return
    atomic.write_text(notes, text)


def set_backup_protected(volid: str, protected: bool, cfg: StorageConfig | None = None) -> None:
    """Create or remove ``<archive>.protected``, honouring ``max-protected-backups``."""
    cfg = cfg or load_config()
    if restic := restic_volume(volid, cfg):
        from . import resticbackups

        resticbackups.set_protected(*restic, protected)
        return
    path = _existing_file(volid, backup_path(volid, cfg))
    marker = Path(f"{path}.protected")
    if not protected:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        return
    if listing.is_protected(path):  # a touch would create a dangling link's target
        return
    store, vol = resolve_volume(volid, cfg)
    limit = store.max_protected_backups
    if vol.vmid is not None and limit is not None and limit > -1:
        entries = listing.list_backups(store, vol.vmid)
        mine = next((e.subtype for e in entries if e.volid == volid), None)
        count = sum(1 for e in entries if e.protected and (mine is None or e.subtype == mine))
        if count >= limit:
            raise StorageError(
                f"The number of protected backups per guest is limited to {limit} "
                f"on storage '{store.id}'"
            )
    # never through a link planted under the name since the check above (a container that
    # reaches the dump directory): touch followed it, and made or dated a host file
    from ..safefile import open_for_write

    os.close(open_for_write(marker, truncate=False))
