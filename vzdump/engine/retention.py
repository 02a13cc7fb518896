"""Pruning after a successful backup, and the retention pre-checks (spec vzdump §5.3–5.4)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared import prune
from shared.errors import ArchiveError, CtkitError, StorageError
from shared.formats.archivename import archive_info
from shared.storage.api import archive_remove, list_backups, reclaim_space, remove_backup

Log = Callable[[str], None]


def candidates_on_storage(storage: str, vmid: int | None) -> list[prune.PruneCandidate]:
    """The container backups on a storage (of one guest, or all of them; a name without a
    valid VMID has none and can only be ``renamed``)."""
    out = []
    for entry in list_backups(storage, vmid):
        if entry.subtype not in ("lxc", None, "unknown"):
            continue
        info = entry.archive
        out.append(
            prune.PruneCandidate(
                name=entry.volid,
                ctime=int(entry.ctime or 0),
                vmid=vmid if vmid is not None else entry.vmid,
                protected=entry.protected,
                std_name=bool(info and info.is_std_name),
            )
        )
    return out


def candidates_in_dir(dumpdir: Path, vmid: int) -> list[prune.PruneCandidate]:
    out = []
    for path in sorted(dumpdir.glob(f"vzdump-lxc-{vmid}-*")):
        try:
            info = archive_info(path.name)
        except ArchiveError:
            continue
        if not info.is_std_name or info.vmid != vmid or info.ctime is None:
            continue
        protected = Path(f"{path}.protected").exists()
        out.append(prune.PruneCandidate(str(path), info.ctime, vmid, protected=protected))
    return out


def existing_count(storage: str | None, dumpdir: Path, vmid: int, protected: bool) -> int:
    cands = candidates_on_storage(storage, vmid) if storage else candidates_in_dir(dumpdir, vmid)
    return sum(1 for c in cands if c.std_name and c.protected == protected)


def precheck(opts: Mapping[str, Any], storage: str | None, dumpdir: Path, vmid: int) -> None:
    """Refuse before anything is done when the retention limit or protected cap is reached."""
    retention = opts["prune-backups"]
    remove = bool(opts.get("remove"))
    if not remove and not prune.is_keep_all(retention):
        count = existing_count(storage, dumpdir, vmid, protected=False)
        msg = prune.backup_limit_error(retention, remove, count)
        if msg:
            raise CtkitError(msg)
    if opts.get("protected") and storage:
        from shared.storage.config import load_config

        limit = load_config().storage(storage).max_protected_backups
        count = existing_count(storage, dumpdir, vmid, protected=True)
        if limit is not None and limit != -1 and count >= limit:
            raise CtkitError(
                f"The number of protected backups per guest is limited to {limit} "
                f"on storage '{storage}'"
            )


def prune_after(
    opts: Mapping[str, Any], storage: str | None, dumpdir: Path, vmid: int, log: Log
) -> None:
    """Remove what the retention policy does not keep; raises when a removal failed."""
    retention = opts["prune-backups"]
    log(f"prune older backups with retention: {prune.log_string(retention)}")
    cands = candidates_on_storage(storage, vmid) if storage else candidates_in_dir(dumpdir, vmid)
    removed = 0
    failed = False
    for cand, mark in prune.mark_group(cands, retention):
        if mark != "remove":
            continue
        try:
            if storage:
                log(f"removing backup '{cand.name}'")
                remove_backup(cand.name, reclaim=False)
            else:
                log(f"delete old backup '{cand.name}'")
                archive_remove(Path(cand.name))
            removed += 1
        except (CtkitError, OSError) as err:
            log(f"error when removing backup '{cand.name}' - {err}")
            failed = True
    if removed and storage:
        try:
            reclaim_space(storage)  # restic: the forgotten snapshots' data is deleted now
        except CtkitError as err:
            log(f"error when reclaiming space - {err}")
            failed = True
    if failed:
        raise StorageError("error pruning backups - check log")
    if removed:
        log(f"pruned {removed} backup(s) not covered by keep-retention policy")
    else:
        log("pruned 0 backup(s)")


__all__ = ["candidates_in_dir", "candidates_on_storage", "precheck", "prune_after"]
