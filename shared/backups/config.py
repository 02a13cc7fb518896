"""The container config stored inside a backup (Proxmox's ``pvesm extractconfig``)."""

from __future__ import annotations

from shared.archive.members import list_members
from shared.archive.targuard import split_name
from shared.archive.vzdumpformat import MEMBERS, read_members
from shared.errors import ArchiveError

from .locate import Backup

# vzdump writes the config (and the firewall config) before the root file system: a config
# that is not among the first few members means the archive did not come from vzdump.
LEADING_MEMBERS = 8
_CONFIG_KEYS = {b"/".join(split_name(n.encode()) or ()) for n in MEMBERS}


def has_leading_config(backup: Backup) -> bool:
    head = list_members(backup.path, limit=LEADING_MEMBERS, compression=backup.compression)
    return any(b"/".join(split_name(m.name) or ()) in _CONFIG_KEYS for m in head)


def extract_config(backup: Backup) -> bytes:
    """``pct.conf`` from the archive's first members; decompression stops right after it."""
    data = None
    if has_leading_config(backup):
        data = read_members(backup.path, compression=backup.compression)[0]
    if data is None:
        raise ArchiveError(f"'{backup.volid}' is not a vzdump archive (no container config)")
    return data
