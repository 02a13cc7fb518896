"""List a storage's backups with their notes, protection and last verification.

Proxmox's ``pvesm list <storage> --content backup`` view plus the verification sidecar; the
scan itself is the storage listing's (``shared.storage.listing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.printable import printable
from shared.storage import resticbackups
from shared.storage.api import backup_storage
from shared.storage.listing import VolumeEntry, list_backups
from shared.storage.resticplugin import ResticStorage

from .locate import check_archive_storage
from .sidecar import Verification, last


@dataclass(frozen=True)
class BackupRow:
    entry: VolumeEntry
    verification: Verification | None

    @property
    def notes_line(self) -> str:
        """The first line of the notes, as Proxmox's listing shows them, printable: notes come
        from whoever writes the storage (a restic tag any writer of a shared repository sets),
        and a terminal would obey escape sequences in them."""
        return printable((self.entry.notes or "").split("\n", 1)[0])

    def as_dict(self) -> dict[str, Any]:
        e, v = self.entry, self.verification
        out: dict[str, Any] = {
            "volid": e.volid,
            "content": e.content,
            "format": e.format,
            "size": e.size,
            "vmid": e.vmid,
            "ctime": e.ctime,
            "subtype": e.subtype,
            "protected": 1 if e.protected else 0,
        }
        if e.notes:
            out["notes"] = e.notes
        if e.host is not None:
            out["host"] = e.host
        if v is not None:
            out["verification"] = {"kind": v.kind, **v.as_dict()}
        return out


def list_backup_rows(sid: str, vmid: int | None = None) -> list[BackupRow]:
    store = backup_storage(sid)
    if isinstance(store, ResticStorage):  # snapshots, no sidecar files
        return [BackupRow(e, None) for e in resticbackups.list_backups(store, vmid, "lxc")]
    check_archive_storage(store)
    return [BackupRow(e, last(e.path)) for e in list_backups(store, vmid, "lxc")]
