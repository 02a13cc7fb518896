"""``pct restore``: a container from a vzdump archive (pct.md §4.1, §4.3; vzdump.md §3).

1. The backed-up config (and firewall config) come from the archive's first members
   (``restore_source``; the format is ``shared.archive.vzdumpformat``'s).
2. The new config and its layout are planned from the command line and the backup
   (``restore_plan``).
3. The new volumes are allocated, mounted, and filled from the archive; the configs are merged
   and the root file system is tidied (``restore_tree``).
4. Commit: the config is written, the firewall file copied, old volumes freed.

Unlike Proxmox, ``--force`` never loses the old container: its config stays as it is apart
from ``lock: create`` while the new volumes (new disk indexes beside the old ones, named in it
as ``unusedN`` until the commit, so that a killed restore leaves none unnamed) are filled;
only when extraction and merge succeeded is the new config written under the config lock, and
only then are the old volumes freed. Any failure frees the new volumes and removes the lock
again, or, for a new id, the placeholder config; a restore killed before it could do that is
undone the same way by the next command (:mod:`shared.runtime.unfinished`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from shared import atomic, paths, signals
from shared import owner as owners
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.errors import AlreadyExistsError, CtkitError, StateError
from shared.runtime import lifecycle, lxcapi, recovery, teardown, unfinished
from shared.runtime.namespace import private_mounts

from .provision import (
    CREATE_LOCK,
    Allocation,
    allocate,
    apply_defaults,
    check_given_volumes,
    commit_config,
    convert_to_template,
    create_locked_config,
    exists_message,
    free_replaced_volumes,
    lock_existing,
    normalize_disk_params,
    prefixed,
    record_new_volumes,
    release_create_lock,
    remove_locked_config,
    remove_staging_dirs,
    replaced_volumes,
    staged,
)
from .restore_check import check_backup_size, check_merged, drop_invalid
from .restore_plan import Plan, RestoreRequest, command_line_config, merge_config, plan_restore
from .restore_source import STDIN, ArchiveSource, open_source, recover_config
from .restore_tree import (
    apply_premade_entries,
    extract_archive,
    remove_config_members,
    template_fixup,
)
from .restore_trust import drop_untrusted

__all__ = ["RestoreRequest", "restore"]

Log = Callable[[str], None]
BANNER = "###########################################################"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# --- filling the new volumes ------------------------------------------------------------------


def _fill(plan: Plan, source: ArchiveSource, req: RestoreRequest, log: Log) -> None:
    """Extract, merge the configs, tidy the root file system."""
    conf = plan.conf
    with staged(conf) as tree:
        premade = extract_archive(source, tree.target, conf, req, log)
        if warning := source.left_out_warning():
            log(warning)
        log("merging backed-up and given configuration..")
        if plan.backup is None:
            for line in (BANNER, "Backup archive does not contain any configuration", BANNER):
                log(line)
        else:
            merge_config(conf, plan.backup, restricted=not req.is_root, unique=req.unique, log=log)
            remove_config_members(tree.target)
        template_fixup(conf, tree.target, log)
        apply_premade_entries(tree.target, premade, conf, log)


# --- the whole operation ----------------------------------------------------------------------


def _check_target(req: RestoreRequest) -> bool:
    """Whether an existing container is replaced (pct.md §4.1.1)."""
    if not store.exists(req.vmid):
        return False
    if not req.force:
        raise AlreadyExistsError(exists_message(req.vmid))
    if lxcapi.is_running(req.vmid):
        raise StateError("can't overwrite running container")
    old = store.load(req.vmid)
    store.check_protection(old, f"unable to restore CT {req.vmid}")
    try:  # its volumes are freed once the restore commits: its linked clones' bases too
        teardown.check_no_linked_clones(old)
    except CtkitError as err:
        raise prefixed(err, f"unable to restore CT {req.vmid} - ") from err
    return True


def _write_firewall(vmid: int, data: bytes, log: Log) -> None:
    path = paths.firewall_conf(vmid)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    except OSError as err:
        log(f"WARN: unable to write firewall config '{path}' - {err.strerror or err}")


def restore(req: RestoreRequest, log: Log = _stderr) -> Config:
    """Restore ``req.archive`` as container ``req.vmid``; returns the written config."""
    params = dict(req.params)
    normalize_disk_params(params, req.storage, log)
    if req.archive == STDIN and "rootfs" not in params:
        raise CtkitError("restore from pipe requires rootfs parameter")
    conf = command_line_config(req.vmid, params, req.unprivileged)
    recovery.recover(req.vmid, log)  # what a killed command left on the id is undone first
    replacing = _check_target(req)
    source = open_source(req.archive, req.stdin)
    alloc = Allocation(req.vmid)
    # the staging mounts live in a mount namespace of this process's own: a restore killed
    # at any instant leaves no mount on the host that keeps the new volumes busy
    private_mounts()
    with signals.held():  # a lock is taken completely, so that the cleanup below finds it
        try:
            if replacing:
                alloc.owner = lock_existing(req.vmid)
            else:  # a placeholder that reserves the id
                placeholder = Config(req.vmid)
                alloc.owner = create_locked_config(placeholder, owner_op=unfinished.RESTORE)
        except CtkitError as err:
            raise prefixed(err, f"unable to restore CT {req.vmid} - ") from err
    try:
        return _restore_locked(req, conf, source, alloc, replacing, log)
    finally:
        if alloc.owner is not None:
            owners.release(alloc.owner)


def _restore_locked(
    req: RestoreRequest,
    conf: Config,
    source: ArchiveSource,
    alloc: Allocation,
    replacing: bool,
    log: Log,
) -> Config:
    """The restore once the id is locked: fill, commit, or undo everything on failure."""
    recorded: list[str] = []  # the new volumes named in a replaced config
    try:
        signals.raise_if_interrupted()
        backup, firewall = recover_config(source, req.vmid, log)
        if backup is not None:
            if not req.trust_archive:
                drop_untrusted(backup, log)
            drop_invalid(backup, log)
            check_backup_size(backup)
        plan = plan_restore(conf, backup, req, log, firewall)
        check_given_volumes(conf)
        with signals.step():  # each new volume is on record before a signal acts
            allocate(conf, alloc, req.storage)
            conf.set("lock", CREATE_LOCK)
            # the new volumes are on record while they are filled (a SIGKILL runs no cleanup)
            if replacing:
                recorded = list(alloc.volids)
                record_new_volumes(req.vmid, recorded)
            else:
                store.save(conf)
        _fill(plan, source, req, log)
        _finish(plan, alloc, log)
        check_merged(conf)
        signals.raise_if_interrupted()  # one noted while the volumes were unmounted
        with signals.held():  # from here on the restore is completed, whatever arrives
            if replacing:  # on record before the commit names them nowhere any more
                old = store.load(req.vmid)
                unfinished.note_replaced(alloc.owner, replaced_volumes(old, conf))
            replaced = commit_config(conf)
    except BaseException as err:
        with signals.held():  # a signal now must not leave volumes or a lock behind
            names = list(alloc.volids)  # their names now; recorded by the names they had
            freed = alloc.free_all(log)
            if replacing:
                # nothing was recorded when the allocation itself failed
                pairs = zip(recorded, names, strict=False)
                forget = [rec for rec, name in pairs if name in freed]
                if not release_create_lock(req.vmid, log, forget, names):
                    alloc.owner = None  # kept: the next command's recovery unlocks
            elif not alloc.keep_for_recovery(log):
                remove_locked_config(req.vmid, log)
                remove_staging_dirs(req.vmid)
        if isinstance(err, CtkitError):
            raise prefixed(err, f"unable to restore CT {req.vmid} - ") from err
        raise
    with signals.held():
        if plan.firewall is not None:
            _write_firewall(req.vmid, plan.firewall, log)
        if replacing:
            free_replaced_volumes(replaced, conf, log)
    if signals.interrupted():  # it came after the commit: the container is the restored one
        log(f"CT {req.vmid} is restored - the signal came after the restore was complete")
        if req.start:
            raise KeyboardInterrupt  # not started: exit 130 says a step was not taken
    if req.start:
        try:
            lifecycle.start(req.vmid, log=log)
        except KeyboardInterrupt:  # the start's own: the restore itself is complete
            log(f"CT {req.vmid} is restored - the signal came during its start")
            raise
    return conf


def _finish(plan: Plan, alloc: Allocation, log: Log) -> None:
    """Defaults, the delayed bind/device mount points, and the template conversion."""
    conf = plan.conf
    apply_defaults(conf)
    for key, text in plan.delayed.items():
        conf.set_raw(key, text)
    if plan.was_template:
        log("Convert restored container to template...")
        convert_to_template(conf, alloc)
