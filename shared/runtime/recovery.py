"""Undo what a dead owner (see :mod:`shared.owner`) left behind on a container.

A vzdump killed with SIGKILL runs no cleanup: its container may stay frozen (suspend mode, or
the instant of a snapshot) or stopped (stop mode), locked, with a ``vzdump`` snapshot, a temp
dir holding a full copy and a ``.dat`` file. Every command that meets the container (vzdump,
``pct status/list/start/unlock``, the scheduler) calls :func:`recover` first: when the recorded
owner no longer lives, this thaws or restarts what it froze or stopped, removes its snapshot and
temp files, drops its lock and the record, and logs one line per thing done. What fails stays
recorded (and locked), so the next command tries again. A killed migration keeps records of
its own: :mod:`shared.runtime.migration` undoes those, called from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from .. import atomic, paths
from .. import owner as owners
from ..ctconfig import store
from ..errors import CtkitError
from ..locks import config_lock, flock
from ..safefile import remove_tree
from . import migration
from .cgroups import CGroup

Log = Callable[[str], None]
RECOVERY_WAIT = 30.0
RESTART_GRACE = 20.0  # seconds for a container a dead owner was stopping to be down
# the locks a dead owner's operation may leave: its own, or a snapshot step's
SNAPSHOT_LOCKS = ("snapshot", "snapshot-delete")


def recover(vmid: int, log: Log, warn: Log | None = None) -> owners.Owner | None:
    """Recover ``vmid`` if its recorded owner is dead; returns that owner (None: nothing to do).

    ``log`` gets what was done, ``warn`` (default: ``log`` with ``WARN:``) what could not be.
    Cheap when there is no record: one failed ``open``.
    """
    warn = warn or (lambda line: log(f"WARN: {line}"))
    migrated = migration.recover(vmid, log)
    _start_owed(vmid, log, warn)
    if owners.read(vmid) is None:
        return migrated
    with flock(owners.recovery_lock_path(vmid), RECOVERY_WAIT):
        dead = owners.read(vmid)  # again: another command may have recovered it meanwhile
        if dead is None or owners.alive(dead):
            return None
        # a write it was killed in left a temp file beside the config or the record
        for directory in (paths.lxc_conf_dir(), paths.owner_dir()):
            atomic.sweep(directory)
        if not store.exists(vmid):
            owners.discard(vmid)
            return None
        # killed, or failed where only the next command can finish (a config it could not write)
        log(f"CT {vmid}: {dead.describe()} ended without cleaning up - recovering")
        problems = _undo(dead, log, warn)
        if problems:
            for problem in problems:
                warn(f"CT {vmid}: {problem}")
            warn(f"CT {vmid}: recovery incomplete, the next command tries again")
        else:
            owners.discard(vmid)
        return dead


def recorded_vmids() -> list[int]:
    """The ids with an owner or migration record: with or without a config (a create killed
    between its record and its first config leaves the record alone)."""
    return sorted({*owners.recorded_vmids(), *migration.recorded_vmids()})


def recover_all(log: Log, warn: Log | None = None) -> list[int]:
    """Recover every container with a dead owner (the scheduler's pass does this first)."""
    done = []
    for vmid in recorded_vmids():
        try:
            if recover(vmid, log, warn) is not None:
                done.append(vmid)
        except CtkitError as err:
            (warn or log)(f"CT {vmid}: recovery failed - {err}")
    return done


def _undo(dead: owners.Owner, log: Log, warn: Log) -> list[str]:
    problems: list[str] = []
    steps: list[Callable[[owners.Owner, Log, Log], None]] = [
        _finish_template,
        _undo_create,
        _undo_move,
        _undo_alloc,
        _undo_mount,
        _finish_destroy,
        _thaw,
        _finish_rollback,
        _remove_snapshot,
        _remove_temp_files,
        _drop_lock,
        _restart,
    ]
    for step in steps:
        try:
            step(dead, log, warn)
        except (CtkitError, OSError) as err:
            problems.append(f"{step.__name__.strip('_').replace('_', ' ')}: {err}")
            if step in (
                _undo_create,
                _undo_move,
                _undo_alloc,
                _undo_mount,
                _finish_destroy,
                _finish_rollback,
                _remove_snapshot,
                _drop_lock,
            ):
                break  # keep the lock while its snapshot (or half a rollback) remains
    return problems


def _thaw(dead: owners.Owner, log: Log, warn: Log) -> None:
    if not dead.frozen:
        return  # frozen by someone else (pct suspend): not ours to thaw
    from . import snapshot  # only a recovery needs it: pct status/list stay light

    conf = store.load_or_none(dead.vmid)
    for path in snapshot.thaw_filesystems(conf) if conf is not None else []:
        log(f"CT {dead.vmid}: thawed the file system at '{path}' {dead.op} had frozen")
    cgroup = CGroup(dead.vmid)
    if cgroup.exists() and cgroup.is_frozen():
        cgroup.thaw()
        log(f"CT {dead.vmid}: thawed the container {dead.op} had frozen")


def _finish_template(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import template  # only a recovery needs it: pct status/list stay light

    if dead.op != template.OWNER_OP:
        return
    with config_lock(dead.vmid):
        conf = store.load(dead.vmid)
        if conf.is_template:
            return  # killed after its last save
        template.resume(conf, store.save)
    log(f"CT {dead.vmid}: finished the conversion to a template that pct template had begun")


def _undo_create(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import unfinished  # only a recovery needs it: pct status/list stay light

    unfinished.undo(dead, log)


def _undo_move(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import unfinished  # only a recovery needs it: pct status/list stay light

    unfinished.undo_move(dead, log)


def _undo_alloc(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import unfinished  # only a recovery needs it: pct status/list stay light

    unfinished.undo_alloc(dead, log)


def _undo_mount(dead: owners.Owner, log: Log, warn: Log) -> None:
    """A ``pct mount`` killed before it was done: what it mounted goes (then its lock, in
    :func:`_drop_lock`), as its own failure would have had it."""
    from ..storage import loop  # only a recovery needs these: pct status/list stay light
    from . import mounts

    if dead.op != mounts.MOUNT_OP:
        return
    with config_lock(dead.vmid):
        conf = store.load_or_none(dead.vmid)
        if conf is None or conf.lock != dead.lock:
            return  # killed before it locked the container: it mounted nothing
        rootfs = paths.lxc_rootfs(dead.vmid)
        mounted = bool(loop.mounts_under(rootfs))
        problems = mounts.unmount_below(rootfs, lazy=False)
    if problems:
        raise CtkitError("; ".join(problems))
    if mounted:
        log(f"CT {dead.vmid}: unmounted what the unfinished pct mount had mounted")


def _finish_destroy(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import teardown  # only a recovery needs it: pct status/list stay light

    if dead.op == teardown.OWNER_OP and teardown.finish(dead.vmid, dead.mode, log):
        log(f"CT {dead.vmid}: finished the destroy pct destroy had begun")


def _finish_rollback(dead: owners.Owner, log: Log, warn: Log) -> None:
    """A rollback past its lock is finished; the container is started afterwards only when the
    rollback was asked to (before its lock, the rollback never began: a container it stopped
    is started again as it was)."""
    from . import snapshot  # only a recovery needs it: pct status/list stay light

    if dead.op != snapshot.ROLLBACK_OP:
        return
    if snapshot.resume_rollback(dead.vmid, dead.snapshot):
        log(f"CT {dead.vmid}: finished the rollback to snapshot '{dead.snapshot}'")
        dead.stopped = dead.mode == "start"


def _remove_snapshot(dead: owners.Owner, log: Log, warn: Log) -> None:
    from . import snapshot  # only a recovery needs it: pct status/list stay light

    if not dead.snapshot or dead.op == snapshot.ROLLBACK_OP:
        return
    with config_lock(dead.vmid):
        conf = store.load(dead.vmid)
    if dead.snapshot not in conf.snapshots:
        return
    state = conf.snapshots[dead.snapshot].values.get("snapstate")
    if dead.op == snapshot.OWNER_OP and (conf.lock != "snapshot" or state != "prepare"):
        return  # pct snapshot died before its prepare step or after its commit: not half-made
    if dead.op == snapshot.DELETE_OP and (conf.lock != "snapshot-delete" or state != "delete"):
        return  # pct delsnapshot died before it marked the snapshot: the user's still
    if conf.lock not in (dead.lock, *SNAPSHOT_LOCKS):
        raise CtkitError(f"CT is locked ({conf.lock}), not removing snapshot '{dead.snapshot}'")
    for problem in snapshot.delete(
        dead.vmid, dead.snapshot, force=True, expected_lock=conf.lock or None
    ):
        warn(f"CT {dead.vmid}: {problem}")
    log(f"CT {dead.vmid}: removed snapshot '{dead.snapshot}'")


def _temp_names(vmid: int) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """What vzdump's temp dir and ``.dat`` file of ``vmid`` are called: nothing else is removed,
    whatever the record says."""
    base = rf"vzdump-lxc-{vmid}-\d{{4}}_\d\d_\d\d-\d\d_\d\d_\d\d"
    tmpdir = re.compile(rf"vzdumptmp\d+_{vmid}|{base}\.tmp")
    dat = re.compile(rf"{base}(\.tar)?\.dat")
    return tmpdir, dat


def _remove_temp_files(dead: owners.Owner, log: Log, warn: Log) -> None:
    tmpdir_re, dat_re = _temp_names(dead.vmid)
    if dead.tmpdir and tmpdir_re.fullmatch(Path(dead.tmpdir).name):
        path = Path(dead.tmpdir)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                remove_tree(path)
            else:
                path.unlink()
            log(f"CT {dead.vmid}: removed temporary directory '{path}'")
    if dead.dat and dat_re.fullmatch(Path(dead.dat).name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dead.dat)  # a planted symlink is removed, never followed
            log(f"CT {dead.vmid}: removed partial archive '{dead.dat}'")


def _drop_lock(dead: owners.Owner, log: Log, warn: Log) -> None:
    if not dead.lock:
        return
    with config_lock(dead.vmid):
        conf = store.load_or_none(dead.vmid)
        if conf is None:
            return  # an unfinished create's config, removed by its undoing
        # a snapshot step of the dead run may have swapped its lock for its own
        held = conf.lock
        if held not in (dead.lock, *(SNAPSHOT_LOCKS if dead.snapshot else ())):
            return
        conf.delete("lock")
        store.save(conf)
    log(f"CT {dead.vmid}: removed lock '{held}'")


def _restart(dead: owners.Owner, log: Log, warn: Log) -> None:
    if dead.stopped:
        restart_stopped(dead.vmid, dead.op, log)


def _start_owed(vmid: int, log: Log, warn: Log) -> None:
    """A reboot killed between its shutdown and its start left the container down and a note
    that it is owed a start (:func:`shared.runtime.stopper.note_owed`)."""
    from . import stopper  # light: pct status/list stay so

    if not stopper.owed_by_dead(vmid):
        return
    with flock(owners.recovery_lock_path(vmid), RECOVERY_WAIT):
        if not stopper.owed_by_dead(vmid):  # another command got here first
            return
        stopper.drop_owed(vmid)  # tried once: a failing start is not retried
        log(f"CT {vmid}: pct {stopper.REBOOT} ended without starting it again - recovering")
        try:
            restart_stopped(vmid, f"pct {stopper.REBOOT}", log)
        except CtkitError as err:
            warn(f"CT {vmid}: starting it again failed - {err}")


def restart_stopped(vmid: int, op: str, log: Log) -> None:
    """Start again the container an operation (``op``) stopped and then gave up: killed, or
    interrupted before it changed anything."""
    from . import lifecycle, lxcapi, mounts

    if lxcapi.is_running(vmid):
        # killed while the guest went down: LXC reports it running until its init is done
        # (the container stayed down for good when it was taken as running here). One still up
        # after the grace was never stopped, or was started again by someone else
        log(f"CT {vmid}: waiting for the shutdown {op} began to end")
        if not lxcapi.wait_state(vmid, "STOPPED", RESTART_GRACE):
            return
    # then the kernel lets go of its raw volumes (a start meanwhile failed on them, after
    # ext4's MMP wait)
    conf = store.load_or_none(vmid)
    if conf is not None:
        mounts.wait_released(conf)
    lifecycle.start(vmid, log=log)
    log(f"CT {vmid}: restarted the container {op} had stopped")
