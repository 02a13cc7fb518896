"""Pruning: after a successful backup, ``vzdump prune <storage>``, and the retention pre-checks
(spec vzdump §5.3–5.4). Both prunes mark with ``shared.prune.mark_group`` and remove through
:func:`remove_marked`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared import owner as owners
from shared import paths, prune
from shared.backups import sidecar
from shared.errors import ArchiveError, CtkitError, ParamError, StorageError
from shared.formats.archivename import archive_info
from shared.formats.types import FormatError
from shared.storage.api import (
    archive_remove,
    backup_storage,
    get_storage,
    list_backups,
    reclaim_space,
    remove_backup,
)
from shared.storage.listing import is_protected, scan_files

from ..options import BackupOptions

Log = Callable[[str], None]
Marked = list[tuple[prune.PruneCandidate, str]]


def candidates_on_storage(storage: str, vmid: int | None) -> list[prune.PruneCandidate]:
    """The container backups on a storage (of one guest, or all of them; a name without a
    valid VMID has none and can only be ``renamed``). Only this node's: in a repository that
    several hosts share, another host's guest with the same VMID is not ours to count or
    remove."""
    out = []
    node = paths.node_name()
    for entry in list_backups(storage, vmid):
        if entry.subtype not in ("lxc", None, "unknown"):
            continue
        if vmid is not None and entry.vmid != vmid:
            continue  # never trust a listing to hold only the guest asked for
        if entry.host is not None and entry.host != node:
            continue
        info = entry.archive
        out.append(
            prune.PruneCandidate(
                name=entry.volid,
                ctime=int(entry.ctime or 0),
                vmid=entry.vmid,
                type=entry.subtype or "unknown",
                protected=entry.protected,
                std_name=bool(info and info.is_std_name),
                failed=_read_back_failed(entry.path),
            )
        )
    return out


def _read_back_failed(archive: Path) -> bool:
    """Did the archive's last verification or restore test fail? (its ``.verify`` sidecar)"""
    result = sidecar.last(archive)
    return result is not None and result.state == "failed"


def candidates_in_dir(dumpdir: Path, vmid: int) -> list[prune.PruneCandidate]:
    """The guest's backups in a dump directory, as a storage's listing finds them: a
    directory, a FIFO, a symlink to one or a broken symlink named like a backup is none
    (counted, a dangling link named as the newest made retention remove real backups)."""
    out = []
    prefix = f"vzdump-lxc-{vmid}-"
    for name, path, _st in scan_files(dumpdir):
        if not name.startswith(prefix):
            continue
        try:
            info = archive_info(name)
        except ArchiveError:
            continue
        if not info.is_std_name or info.vmid != vmid or info.ctime is None:
            continue
        protected = is_protected(path)
        out.append(
            prune.PruneCandidate(
                str(path), info.ctime, vmid, protected=protected, failed=_read_back_failed(path)
            )
        )
    return out


def existing_count(storage: str | None, dumpdir: Path, vmid: int, protected: bool) -> int:
    cands = candidates_on_storage(storage, vmid) if storage else candidates_in_dir(dumpdir, vmid)
    return sum(1 for c in cands if c.std_name and c.protected == protected)


def precheck(opts: BackupOptions, storage: str | None, dumpdir: Path, vmid: int) -> None:
    """Refuse before anything is done when the retention limit or protected cap is reached."""
    retention = opts.retention
    remove = opts.remove
    if not remove and not prune.is_keep_all(retention):
        count = existing_count(storage, dumpdir, vmid, protected=False)
        msg = prune.backup_limit_error(retention, remove, count)
        if msg:
            raise CtkitError(msg)
    if opts.protected and storage:
        from shared.storage.config import load_config

        limit = load_config().storage(storage).max_protected_backups
        count = existing_count(storage, dumpdir, vmid, protected=True)
        if limit is not None and limit != -1 and count >= limit:
            raise CtkitError(
                f"The number of protected backups per guest is limited to {limit} "
                f"on storage '{storage}'"
            )


def prune_after(
    opts: BackupOptions,
    storage: str | None,
    dumpdir: Path,
    vmid: int,
    log: Log,
    *,
    warn: Log | None = None,
    made: str | None = None,
    reclaim_later: set[str] | None = None,
) -> None:
    """Remove what the retention policy does not keep; raises when a removal failed. ``made``
    is the backup just written: never removed by its own retention. With ``reclaim_later``,
    a storage whose space is still to be reclaimed is added to it. ``warn`` as for
    :func:`remove_marked`."""
    retention = opts.retention
    log(f"prune older backups with retention: {prune.log_string(retention)}")
    cands = candidates_on_storage(storage, vmid) if storage else candidates_in_dir(dumpdir, vmid)
    marked = prune.mark_group(cands, retention)
    for i, (cand, mark) in enumerate(marked):
        if cand.name == made and mark == "remove":
            # ranked by the time in the names, a backup named later (a clock set back, an
            # hour repeated in autumn) outranked it: the one just made is kept all the same
            log(f"keeping the new backup '{made}' - another is named with a later time")
            marked[i] = (cand, "keep")
    removed = remove_marked(marked, storage, log, warn=warn, reclaim_later=reclaim_later)
    if removed:
        log(f"pruned {removed} backup(s) not covered by keep-retention policy")
    else:
        log("pruned 0 backup(s)")


def remove_marked(
    marked: Marked,
    storage: str | None,
    log: Log,
    *,
    warn: Log | None = None,
    reclaim_later: set[str] | None = None,
) -> int:
    """Remove the entries marked ``remove`` (volume ids on ``storage``, else dump-directory
    paths); a failure is logged and the rest still removed, then raised. One already gone
    (another prune of the guest at the same time) is removed, as Proxmox counts it. A
    companion file left behind goes to ``warn`` (default: ``log`` with ``WARN:``). Returns
    the count."""
    warn = warn or (lambda line: log(f"WARN: {line}"))
    removed = 0
    failed = False
    for cand, mark in marked:
        if mark != "remove":
            continue
        try:
            if storage:
                log(f"removing backup '{cand.name}'")
                left = remove_backup(cand.name, reclaim=False, gone_ok=True)
            else:
                log(f"delete old backup '{cand.name}'")
                left = archive_remove(Path(cand.name))
            removed += 1
            for warning in left:
                warn(warning)
        except (CtkitError, OSError) as err:
            log(f"error when removing backup '{cand.name}' - {err}")
            failed = True
    if removed and storage and reclaim_later is not None:
        reclaim_later.add(storage)
    elif removed and storage:
        try:
            reclaim_space(storage)  # restic: the forgotten snapshots' data is deleted now
        except CtkitError as err:
            log(f"error when reclaiming space - {err}")
            failed = True
    if failed:
        raise StorageError("error pruning backups - check log")
    return removed


def storage_retention(storage: str, raw: str | None) -> dict[str, Any]:
    """The retention for ``vzdump prune``: ``--prune-backups`` if given, else the storage's."""
    if raw is not None:
        try:
            return prune.parse_prune_backups(raw)
        except FormatError as err:
            raise ParamError.of_value("prune-backups", err) from None
    return get_storage(storage).prune_backups or {"keep-all": True}


def _in_the_making(cands: list[prune.PruneCandidate]) -> list[prune.PruneCandidate]:
    """The backups that a backup running in another process may still be making: those of its
    guest named from its start on. They can be listed before they are known to be complete
    (restic saves a snapshot of a failed backup and forgets it only afterwards), and a prune
    that counted one removed the last complete backup."""
    since: dict[int, float] = {}
    for vmid in {c.vmid for c in cands if c.vmid is not None}:
        holder = owners.read(vmid)
        alive = holder is not None and holder.pid != os.getpid() and owners.alive(holder)
        if holder is not None and alive and holder.op == owners.BACKUP_OP:
            since[vmid] = owners.started_at(holder) - 1  # names are in whole seconds
    return [c for c in cands if c.vmid in since and c.ctime >= since[c.vmid]]


def prune_storage(
    storage: str, vmid: int | None, retention: Mapping[str, Any], *, dry_run: bool, log: Log
) -> Marked:
    """``vzdump prune``: mark a storage's container backups (one guest's, or all, each guest
    on its own) and, unless ``dry_run``, remove the ``remove`` ones. Sorted by guest, newest
    first. A storage without content ``backup`` is refused before anything is marked, as
    Proxmox does: its dump directory may hold another storage's backups (two storages on one
    path). What a backup running in another process may still be making is left out."""
    backup_storage(storage, refusal=f"storage '{storage}' does not support backups")
    cands = candidates_on_storage(storage, vmid)
    making = _in_the_making(cands)
    for cand in making:
        log(f"leaving '{cand.name}' alone - a backup of CT {cand.vmid} is running")
    marked = prune.mark_group([c for c in cands if c not in making], retention)
    marked.sort(key=lambda cm: (cm[0].vmid or 0, -cm[0].ctime, cm[0].name))
    if not dry_run:
        remove_marked(marked, storage, log)
    return marked


__all__ = [
    "candidates_in_dir",
    "candidates_on_storage",
    "precheck",
    "prune_after",
    "prune_storage",
    "remove_marked",
    "storage_retention",
]
