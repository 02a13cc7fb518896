"""What a killed migration left behind, undone by the next command on either host.

A migration keeps one record per side in ``var/lib/ctkit/migrate/`` (:mod:`shared.owner`'s
free-form records: the owning process, its boot and start time, plus what it has done; on disk,
so that a host that crashed mid-migration undoes its side at the next boot):

- the source's ``out-<vmid>.json``: the phase, whether it stopped the container, the btrfs
  snapshots it took. A dead owner before the commit means the target rolls back by itself (its
  session ends with the connection), so here the snapshots go, the lock ``migrate`` goes and the
  container runs again if the migration stopped it. After the target committed, the source
  copy is removed as the migration would have removed it (``remote-migrate`` without
  ``--delete`` keeps it, stopped and locked). While it was committing, the target may run the
  container: the source copy stays stopped and locked. (A signal cannot leave that state: the
  commit holds signals until its answer; a SIGKILL or a cut link can.)
- the target's ``in-<vmid>.json``: the volumes its session allocated. A dead session (killed,
  or its host rebooted) is rolled back: the container stopped if it was started, the volumes
  and what was received into them removed, the reserved config removed. A committed one only
  loses its lock and the staging left beside its volumes.

- the target's ``done-<vmid>.json``: the token of a migration it committed whose source did
  not acknowledge the answer (killed, or the link cut in the commit). That source asks for it
  (``pct migrate-target outcome``) at once and at each next command, and removes its copy or
  starts it again by the answer. Kept ``DONE_KEEP_DAYS``.

Every command that meets the container calls :func:`recover` through
:func:`shared.runtime.recovery.recover`; a live migration is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import owner, paths
from ..ctconfig import store
from ..ctconfig.config import Config
from ..errors import CtkitError
from ..locks import config_lock, flock
from . import lxcapi

# the storage layer and the start machinery are imported by the functions that undo a migration:
# every pct status/list asks recover(), and almost always there is nothing to undo

Log = Callable[[str], None]
RECOVERY_WAIT = 30.0
LOCK = "migrate"
RECORD_RE = re.compile(r"(?:out|in)-([1-9][0-9]{2,8})\.json")
# a migration's id: the source asks the target by it whether its commit happened
TOKEN_RE = re.compile(r"[0-9a-f]{32}")
DONE_KEEP_DAYS = 30
# ``<migrate_dir>/mnt-<vmid>-<pid>``: where a target's rsync copy mounts the volume it fills
STAGING_PREFIX = "mnt-"


def recorded_vmids() -> list[int]:
    """Containers with a migration record on this host (either direction)."""
    try:
        names = os.listdir(paths.migrate_records_dir())
    except FileNotFoundError:
        return []
    return sorted({int(m.group(1)) for n in names if (m := RECORD_RE.fullmatch(n))})


def outgoing_record(vmid: int) -> Path:
    return paths.migrate_records_dir() / f"out-{vmid}.json"


def incoming_record(vmid: int) -> Path:
    return paths.migrate_records_dir() / f"in-{vmid}.json"


def done_record(vmid: int) -> Path:
    """The target's note of the last migration committed into ``vmid`` (its token)."""
    return paths.migrate_records_dir() / f"done-{vmid}.json"


def recover(vmid: int, log: Log) -> owner.Owner | None:
    """Recover a dead migration of ``vmid`` from or into this host.

    Returns the dead source's owner (``stopped`` when it had stopped the container, which now
    runs again) so callers treat it like any dead owner; None when there was nothing outgoing.
    Cheap when there is no record: two failed ``open`` calls."""
    out = owner.read_record(outgoing_record(vmid))
    if owner.read_record(incoming_record(vmid)) is not None:
        recover_incoming(vmid, log)
    if out is None:
        return None
    with flock(owner.recovery_lock_path(vmid), RECOVERY_WAIT):
        rec = owner.read_record(outgoing_record(vmid))  # again: another command may have done it
        if rec is None or (rec and owner.record_alive(rec)):
            return None
        _sweep_records()
        return _recover_outgoing(vmid, rec, log)


def _sweep_records() -> None:
    """A record's write that was killed left its temp file beside it."""
    from .. import atomic

    atomic.sweep(paths.migrate_records_dir())


# --- the source -----------------------------------------------------------------------------


def drop_snapshots(snapshots: Any, log: Log) -> None:
    """Remove the migration's snapshots (``{volid: [name, ...]}``, only names a migration
    uses): what it sent needs no keeping once it was committed or abandoned."""
    from ..storage import btrfssend
    from ..storage.volumes import list_snapshots, snapshot_delete

    for volid, names in (snapshots if isinstance(snapshots, dict) else {}).items():
        try:
            existing = set(list_snapshots(str(volid)))
        except CtkitError:
            continue  # the volume is gone: so are its snapshots
        for snap in names if isinstance(names, list) else []:
            if snap in btrfssend.SNAP_NAMES and snap in existing:
                try:
                    snapshot_delete(str(volid), snap)
                except CtkitError as err:
                    log(f"ERROR: removing snapshot '{snap}' of '{volid}' failed - {err}")


def unlock(vmid: int) -> None:
    """Drop the lock ``migrate`` (and only that one)."""
    with config_lock(vmid):
        conf = store.load_or_none(vmid)
        if conf is not None and conf.lock == LOCK:
            conf.delete("lock")
            store.save(conf)


def remove_source(vmid: int, log: Log) -> None:
    """The source copy of a container the target committed: its volumes, its config and what
    goes with them, as a migration ends."""
    import shutil

    from ..ctconfig.pending import referenced_volumes
    from ..storage.volumes import free_volume
    from .mounts import wait_released

    with config_lock(vmid):
        conf = store.load(vmid)
        # a copy that ended a moment ago (killed: its mount namespace goes last) may still hold
        # a raw volume's loop device
        wait_released(conf)
        for volid in referenced_volumes(conf):
            log(f"removing volume '{volid}' on the source")
            free_volume(volid)
        shutil.rmtree(paths.lxc_dir(vmid), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            paths.firewall_conf(vmid).unlink()
        store.remove(vmid)


def ask_outcome(
    remote_name: object, target_vmid: object, token: object, timeout: float = 60
) -> str | None:
    """The target's word on a commit whose answer was lost: ``committed``, ``none`` (not
    committed, its side rolled back) or ``pending``; None when it cannot be asked (no token,
    no such remote, no connection, no sensible answer)."""
    import json

    from ..remote import config as remotes
    from ..remote import ssh

    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        return None
    if not isinstance(remote_name, str) or not isinstance(target_vmid, int):
        return None
    args = ["migrate-target", "outcome", str(target_vmid), token]
    try:
        out = ssh.run_pct(remotes.get(remote_name), args, timeout=timeout)
        reply = json.loads(out.strip().splitlines()[-1])
    except (CtkitError, ValueError, IndexError, RecursionError):
        return None
    outcome = reply.get("outcome") if isinstance(reply, dict) else None
    return outcome if outcome in ("committed", "none", "pending") else None


def _settle(vmid: int, rec: dict[str, Any], log: Log) -> str:
    """The phase of a migration that died in its commit, as the target tells it: committed,
    ``copy`` (not committed: undone like a failure before the commit) or still committing."""
    remote = rec.get("remote")
    # (any command may be the one that asks, pct list too: a remote that hangs costs it 20 s)
    outcome = ask_outcome(remote, rec.get("target_vmid"), rec.get("token"), timeout=20)
    if outcome == "committed":
        log(f"CT {vmid}: remote '{remote}' committed the migration")
        return "committed"
    if outcome == "none":
        log(f"CT {vmid}: remote '{remote}' did not commit the migration - undoing it here")
        return "copy"
    if outcome == "pending":
        log(f"CT {vmid}: remote '{remote}' is still committing - the next command asks again")
    elif rec.get("token"):
        log(f"CT {vmid}: remote '{remote}' could not be asked - the next command asks again")
    return "committing"


def _committed_copy(vmid: int, phase: object, rec: dict[str, Any]) -> bool:
    """Whether this host holds the stopped, locked source copy of a container its migration
    committed and was to remove (``pct migrate``; ``remote-migrate`` without ``--delete``
    keeps it on purpose)."""
    if phase != "committed" or rec.get("delete") is not True:
        return False
    conf = store.load_or_none(vmid)
    return conf is not None and conf.lock == LOCK and not lxcapi.is_running(vmid)


def _recover_outgoing(vmid: int, rec: dict[str, Any], log: Log) -> owner.Owner:
    from . import lifecycle

    phase = rec.get("phase")
    stopped = rec.get("stopped") is True
    log(f"CT {vmid}: migration (pid {rec.get('pid')}) died in phase '{phase}' - recovering")
    dead = owner.Owner(vmid, "migrate", 0, 0, "", lock=LOCK, stopped=False)
    drop_snapshots(rec.get("snapshots"), log)
    ours = (store.load_or_none(vmid) or Config(vmid)).lock == LOCK
    if phase == "committing" and ours:
        phase = _settle(vmid, rec, log)
    if _committed_copy(vmid, phase, rec):
        log(f"CT {vmid}: remote '{rec.get('remote')}' has the container now - removing this copy")
        try:
            remove_source(vmid, log)
        except CtkitError as err:
            log(f"ERROR: CT {vmid}: removing the source copy failed - {err}")
            return dead  # the record stays: the next command tries again
    elif phase in ("committing", "committed"):
        if not ours:  # someone checked the target and unlocked this copy meanwhile
            owner.remove_record(outgoing_record(vmid))
            return dead
        known = "has" if phase == "committed" else "may have"
        log(
            f"CT {vmid}: remote '{rec.get('remote')}' {known} the container now - this copy "
            f"stays stopped and locked '{LOCK}' (check there, then 'pct unlock' or 'pct destroy')"
        )
        if phase == "committing" and rec.get("token"):
            return dead  # the record stays: the next command asks again
    elif store.exists(vmid):
        if stopped and not lxcapi.is_running(vmid):
            try:
                lifecycle.start(vmid, skiplock=True, log=log)
                dead.stopped = True
                log(f"CT {vmid}: restarted the container the migration had stopped")
            except CtkitError as err:
                log(f"WARN: CT {vmid}: restarting failed - {err}")
        unlock(vmid)
        log(f"CT {vmid}: removed lock '{LOCK}'")
    owner.remove_record(outgoing_record(vmid))
    return dead


# --- the target -----------------------------------------------------------------------------


def reserved(vmid: int) -> bool:
    """The config is the session's: its reservation, or the migrated config not yet committed
    (both locked ``migrate``; the VMID was free when the session reserved it)."""
    conf = store.load_or_none(vmid)
    return conf is not None and conf.lock == LOCK


def discard_received(volumes: Any, log: Log) -> None:
    """Remove the staging (received snapshots, the replaced empty volume) beside each volume."""
    from ..storage import btrfssend
    from ..storage.btrfsplugin import BtrfsStorage
    from ..storage.config import load_config
    from ..storage.volid import parse_volume_id

    cfg = load_config()
    for volid in volumes if isinstance(volumes, list) else []:
        try:
            sid, volname = parse_volume_id(str(volid))
            st = cfg.storage(sid)
            if isinstance(st, BtrfsStorage):
                btrfssend.discard_staging(st, volname)
        except CtkitError as err:
            log(f"ERROR: removing what was received for '{volid}' failed - {err}")


def rollback_incoming(vmid: int, rec: dict[str, Any], log: Log) -> None:
    """Free what a session made, newest first; keep a committed container (only unlocked).

    Under the recovery lock from start to end: a receiver that ends meanwhile checks, under
    the same lock, whether the session is still there (see :func:`incoming_gone`)."""
    with flock(owner.recovery_lock_path(vmid), RECOVERY_WAIT):
        _rollback_incoming(vmid, rec, log)


@contextlib.contextmanager
def incoming_gone(vmid: int, alive: Callable[[], bool]) -> Iterator[bool]:
    """Whether the session into ``vmid`` has ended (rolled back or committed), asked while no
    rollback runs; a caller that finds it gone removes what it made itself, within the block
    (the rollback has run, or will not see it)."""
    with flock(owner.recovery_lock_path(vmid), RECOVERY_WAIT):
        yield not alive()


def _rollback_incoming(vmid: int, rec: dict[str, Any], log: Log) -> None:
    from ..storage.volumes import free_when_released
    from . import lifecycle

    volumes = rec.get("volumes", [])
    if rec.get("committed"):
        _remember_commit(vmid, rec.get("token"))
        unlock(vmid)
        discard_received(volumes, log)
        owner.remove_record(incoming_record(vmid))
        return
    if lxcapi.is_running(vmid) and reserved(vmid):
        with contextlib.suppress(CtkitError):
            lifecycle.stop(vmid, skiplock=True, log=log)
    discard_received(volumes, log)
    _remove_dead_staging(vmid)
    kept = []
    for volid in reversed(volumes if isinstance(volumes, list) else []):
        # a copy killed a moment ago: the kernel lets go of its loop device a little later
        if not free_when_released(str(volid), lambda line: log(f"ERROR: {line}")):
            kept.append(volid)
    with config_lock(vmid):
        if reserved(vmid):
            store.remove(vmid)
    if kept:  # the next command's recovery tries them again: never a volume nobody knows of
        owner.write_record(incoming_record(vmid), {**rec, "volumes": kept[::-1]})
        return
    owner.remove_record(incoming_record(vmid))


def _remove_dead_staging(vmid: int) -> None:
    """The empty mount directories of this container's copies that were killed (their mount
    went with their namespace)."""
    from .. import atomic

    try:
        names = os.listdir(paths.migrate_dir())
    except FileNotFoundError:
        return
    prefix = f"{STAGING_PREFIX}{vmid}-"
    for name in names:
        pid = name[len(prefix) :] if name.startswith(prefix) else ""
        if pid.isdigit() and not atomic.pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                (paths.migrate_dir() / name).rmdir()  # never a mount point's content


def _remember_commit(vmid: int, token: object) -> None:
    """Note the committed migration's token before its session record goes: a source that
    lost the commit's answer asks for it (:func:`commit_outcome`). Notes older than
    ``DONE_KEEP_DAYS`` go at the same time."""
    import json
    import time

    from .. import atomic

    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        return  # a source of before tokens: it never asks
    atomic.write_text(done_record(vmid), json.dumps({"token": token}) + "\n")
    cutoff = time.time() - DONE_KEEP_DAYS * 86400
    for old in paths.migrate_records_dir().glob("done-*.json"):
        with contextlib.suppress(OSError):
            if old.lstat().st_mtime < cutoff:
                old.unlink()


def commit_outcome(vmid: int, token: str, log: Log) -> str:
    """Whether the migration ``token`` committed ``vmid`` here: ``committed``, ``none`` (its
    session rolled back or never began) or ``pending`` (its session still runs). A commit the
    source acknowledged leaves no note: that source knows, and never asks."""
    recover_incoming(vmid, log)  # a dead session: rolled back, or its commit noted
    if owner.read_record(incoming_record(vmid)) is not None:
        return "pending"
    done = owner.read_record(done_record(vmid)) or {}  # (a file, not a symlink, bounded)
    return "committed" if done.get("token") == token else "none"


def recover_incoming(vmid: int, log: Log) -> bool:
    """Roll back a session into ``vmid`` whose owner died. True when there was one."""
    with flock(owner.recovery_lock_path(vmid), RECOVERY_WAIT):
        rec = owner.read_record(incoming_record(vmid))
        if rec is None or (rec and owner.record_alive(rec)):
            return False
        log(f"CT {vmid}: rolling back an interrupted migration into this host")
        _sweep_records()
        _rollback_incoming(vmid, rec or {"vmid": vmid}, log)
        return True
