"""Storages: storage.cfg (types ``dir`` and ``btrfs``), volume ids, listing, container volumes.

Entry points:

- :mod:`.config` — ``load_config()``/``save_config()``; ``local`` always exists.
- :mod:`.api` — ``get_storage``, ``resolve_volume``, templates (pveam), backups (vzdump).
- :mod:`.volumes` — container volumes by volume id: alloc/free/resize, snapshots, mounting.
- :mod:`.loop` — loop devices, mounts and ext4 resizing by path.
- :mod:`.volid` — parsing volume ids and names.
"""

from __future__ import annotations

from .api import (
    archive_remove,
    backup_dir,
    backup_path,
    backup_storage,
    check_storage_id,
    check_volume_content,
    get_storage,
    list_backups,
    list_templates,
    remove_backup,
    remove_template,
    resolve_template,
    resolve_volume,
    set_backup_notes,
    set_backup_protected,
    template_dir,
    volume_owner,
    volume_path,
)
from .base import Storage
from .config import StorageConfig, load_config, parse_config, save_config
from .listing import VolumeEntry
from .volid import VolName, format_volid, is_volume_id, parse_volname, parse_volume_id
from .volumes import (
    alloc_volume,
    convert_to_base,
    free_volume,
    grow_filesystem,
    list_snapshots,
    list_vmid_volumes,
    mount_volume,
    mounted_volume,
    needs_fsfreeze,
    resize_volume,
    snapshot_create,
    snapshot_delete,
    snapshot_path,
    snapshot_rollback,
    volume_format,
    volume_has_feature,
    volume_size,
)

__all__ = [
    "Storage",
    "StorageConfig",
    "VolName",
    "VolumeEntry",
    "alloc_volume",
    "archive_remove",
    "backup_dir",
    "backup_path",
    "backup_storage",
    "check_storage_id",
    "check_volume_content",
    "convert_to_base",
    "format_volid",
    "free_volume",
    "get_storage",
    "grow_filesystem",
    "is_volume_id",
    "list_backups",
    "list_snapshots",
    "list_templates",
    "list_vmid_volumes",
    "load_config",
    "mount_volume",
    "mounted_volume",
    "needs_fsfreeze",
    "parse_config",
    "parse_volname",
    "parse_volume_id",
    "remove_backup",
    "remove_template",
    "resize_volume",
    "resolve_template",
    "resolve_volume",
    "save_config",
    "set_backup_notes",
    "set_backup_protected",
    "snapshot_create",
    "snapshot_delete",
    "snapshot_path",
    "snapshot_rollback",
    "template_dir",
    "volume_format",
    "volume_has_feature",
    "volume_owner",
    "volume_path",
    "volume_size",
]
