"""Container snapshots: a ``[name]`` config section plus a storage snapshot of each volume.

Used by vzdump's snapshot mode (the fixed name ``vzdump``) and by pct's snapshot commands
(create, delete, rollback). A running container is frozen only for the instant the volume
snapshots are taken, after its file systems were synced (``syncfs``) and, where the storage
needs it, frozen (``FIFREEZE``); it is thawed on every exit path. Spec pct.md §5.

Every step that changes the config runs under the per-container flock; the storage work runs
between those steps with a ``lock:`` (snapshot, snapshot-delete, rollback) in the config, so a
crash leaves a visible lock rather than a half-updated config. A snapshot being taken is also
covered by an owner record (:mod:`shared.owner`): a process killed inside the freeze window
leaves the container frozen, and the next command (:mod:`shared.runtime.recovery`) thaws it and
drops the half-made snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import owner as owners
from .. import signals
from ..ctconfig import store
from ..ctconfig.config import Config, Section
from ..ctconfig.mountpoints import MountPoint, add_unused_volume, used_volumes
from ..errors import CtkitError, LockError, StateError, StorageError
from ..locks import config_lock
from ..storage import volumes
from ..writeback import syncfs
from . import lifecycle, lxcapi
from .beneath import open_beneath
from .cgroups import CGroup

Include = Callable[[MountPoint], bool]
Log = Callable[[str], None]
RESERVED = ("current", "vzdump")
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
SNAPSHOT_DROP = ("lock", "digest", "snapstate", "snaptime", "vmstate", "description", "parent")
# the owner record's op while a snapshot is taken (recovery removes only a snapshot still in
# ``snapstate: prepare`` for it: a committed one is the user's)
OWNER_OP = "snapshot"
# ... while pct delsnapshot and rollback work: recovery finishes what they had begun, since
# their ``lock:`` shows they were past every check
DELETE_OP = "delsnapshot"
ROLLBACK_OP = "rollback"


def _all(_mp: MountPoint) -> bool:
    return True


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def snapshot_volumes(conf: Section, include: Include = _all) -> list[MountPoint] | None:
    """The included mount points, or None when one of them cannot be snapshotted."""
    mps = [mp for mp in conf.mountpoints(strict=True) if include(mp)]
    for mp in mps:
        if mp.type != "volume" or not volumes.volume_has_feature(mp.volume, "snapshot"):
            return None
    return mps


def thaw_filesystems(conf: Config) -> list[str]:
    """FITHAW the running CT's volumes that a snapshot freezes with FIFREEZE (an ext4 image
    on btrfs): a process killed inside that window leaves them frozen for good, every write
    of the container hanging. Returns the mount paths that were frozen."""
    pid = lxcapi.init_pid(conf.vmid)
    if pid is None:
        return []
    thawed = []
    for mp in conf.mountpoints():
        try:
            if mp.type != "volume" or not volumes.needs_fsfreeze(mp.volume):
                continue
        except CtkitError:
            continue
        fd = _open_volume(pid, mp)
        if fd is None:
            continue
        try:
            fcntl.ioctl(fd, FITHAW)
            thawed.append(mp.path)
        except OSError:  # EINVAL: it was not frozen
            pass
        finally:
            os.close(fd)
    return thawed


def _open_volume(pid: int, mp: MountPoint) -> int | None:
    """An fd of the file system of ``mp``'s volume, as the running CT (``pid``) has it mounted
    at its path; None when something else is there. The container owns its tree: it may have
    unmounted the volume and put a symlink there (through ``/proc/<pid>/root`` an absolute
    one resolves on the host) or another mount, and syncfs and FIFREEZE through such an fd
    would reach a host file system (frozen for good if it holds the storage being
    snapshotted)."""
    try:
        fd = open_beneath(Path(f"/proc/{pid}/root"), mp.path, os.O_RDONLY | os.O_DIRECTORY)
    except (CtkitError, OSError):
        return None
    try:
        if os.fstat(fd).st_dev in volumes.mounted_devices(mp.volume):
            return fd
    except (CtkitError, OSError):
        pass
    os.close(fd)
    return None


@dataclass
class FreezeReport:
    seconds: float = 0.0


@contextlib.contextmanager
def _quiesced(
    conf: Config, mps: list[MountPoint], report: FreezeReport, owner: owners.Owner | None
) -> Iterator[None]:
    """Freeze the CT's cgroup, sync and fsfreeze its volumes; undo all of it afterwards.
    ``owner`` (ours, not a caller's) notes the freeze before it and its end after, outside the
    frozen window."""
    pid = lxcapi.init_pid(conf.vmid)
    if pid is None:
        yield
        return
    fds = [(mp, fd) for mp in mps if (fd := _open_volume(pid, mp)) is not None]
    frozen_fs: list[int] = []
    started: float | None = None
    try:
        # flush while the container still runs: the syncfs under the freeze then only writes
        # what changed in the last moment, so the frozen window stays short however much was
        # written before (a full flush of a busy 1 GB tree took 300+ ms, frozen)
        for _mp, fd in fds:
            syncfs(fd)
        cgroup = CGroup(conf.vmid)
        ours = not cgroup.is_frozen()  # a CT the user suspended stays theirs to resume
        if owner is not None and ours:
            owners.update(owner, frozen=True)
        started = time.monotonic()
        with cgroup.frozen():
            for mp, fd in fds:
                syncfs(fd)
                if volumes.needs_fsfreeze(mp.volume):
                    fcntl.ioctl(fd, FIFREEZE)
                    frozen_fs.append(fd)
            try:
                yield
            finally:
                for fd in frozen_fs:
                    with contextlib.suppress(OSError):
                        fcntl.ioctl(fd, FITHAW)
    finally:
        report.seconds = time.monotonic() - started if started is not None else 0.0
        for _mp, fd in fds:
            os.close(fd)
    # not on an exception: the record keeps saying frozen until create's cleanup is done
    if owner is not None and owner.frozen:
        owners.update(owner, frozen=False)


def _section_copy(conf: Config, name: str, description: str | None) -> Section:
    section = Section(conf.vmid, dict(conf.values), list(conf.lxc))
    for key in [k for k in section.values if k in SNAPSHOT_DROP or k.startswith("unused")]:
        del section.values[key]
    if conf.parent and conf.parent != name:
        section.values["parent"] = conf.parent
    section.values["snaptime"] = str(int(time.time()))
    section.values["snapstate"] = "prepare"
    if description:
        section.description = description
    return section


@dataclass
class _Progress:
    """What a snapshot create has written so far, each set in the same held step as the write
    it stands for: a signal at any instant finds the undo it needs."""

    owner: owners.Owner | None = None
    prepared: bool = False
    committed: bool = False


def _prepare(
    vmid: int,
    name: str,
    description: str | None,
    expected_lock: str | None,
    include: Include,
    log: Log,
    claim: bool,
    progress: _Progress,
) -> tuple[Config, list[MountPoint]]:
    """Write the ``[name]`` section (``snapstate: prepare``) and ``lock: snapshot``; with
    ``claim``, an owner record of this process first (in ``progress``)."""
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.is_template:
            raise StateError("you can't take a snapshot if it's a template")
        if conf.lock != expected_lock:
            store.check_lock(conf)
        if name in conf.snapshots:
            raise CtkitError(f"snapshot name '{name}' already used")
        # checked before anything is written, so a refusal leaves the config as it was
        mps = snapshot_volumes(conf, include)
        if mps is None:
            raise StorageError("snapshot feature is not available")
        for other in sorted(conf.snapshots):
            if conf.snapshots[other].values.get("parent") == name:
                log(
                    f"deleting parent '{name}' reference from '{other}' to avoid bogus "
                    "snapshot cycle."
                )
                del conf.snapshots[other].values["parent"]
        conf.snapshots[name] = _section_copy(conf, name, description)
        conf.set("lock", "snapshot")
        with signals.step():  # a signal during these: create undoes them right after
            # after the checks (a refusal leaves no record) and before the save (a kill right
            # after it leaves one): recovery then finds the lock and the section it may undo
            if claim:
                progress.owner = owners.claim(vmid, OWNER_OP, lock="snapshot", snapshot=name)
            store.save(conf)
            progress.prepared = True
    return conf, mps


def _commit(vmid: int, name: str, restore_lock: str | None) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock != "snapshot":
            raise LockError("missing snapshot lock")
        section = conf.snapshots.get(name)
        if section is None:
            raise CtkitError(f"snapshot '{name}' does not exist")
        section.values.pop("snapstate", None)
        conf.set("parent", name)
        if restore_lock:
            conf.set("lock", restore_lock)
        else:
            conf.delete("lock")
        store.save(conf)


def _abort(vmid: int, name: str, done: list[MountPoint], restore_lock: str | None) -> None:
    for mp in done:
        with contextlib.suppress(CtkitError):
            volumes.snapshot_delete(mp.volume, name)
    with config_lock(vmid):
        conf = store.load(vmid)
        conf.snapshots.pop(name, None)
        if restore_lock:
            conf.set("lock", restore_lock)
        elif conf.lock == "snapshot":
            conf.delete("lock")
        store.save(conf)


def create(
    vmid: int,
    name: str,
    *,
    description: str | None = None,
    include: Include = _all,
    expected_lock: str | None = None,
    allow_reserved: bool = False,
    owned: bool = False,
    log: Log = _stderr,
) -> FreezeReport:
    """Take snapshot ``name``; returns how long the container was frozen.

    ``expected_lock`` is a lock the caller itself holds (vzdump's ``backup``): it is swapped for
    ``snapshot`` during the operation and put back afterwards. ``owned``: the caller's own
    owner record already covers this snapshot and the freeze (vzdump's); otherwise create
    records itself as the owner while it works (the caller has run recovery first). A
    cleanup that fails leaves that record behind, for the next command to retry.
    """
    if name in RESERVED and not allow_reserved:
        raise CtkitError(f"unable to use snapshot name '{name}' (reserved name)")
    progress = _Progress()
    report = FreezeReport()
    done: list[MountPoint] = []
    try:
        conf, mps = _prepare(
            vmid, name, description, expected_lock, include, log, not owned, progress
        )
        running = lxcapi.is_running(vmid)
        with _quiesced(conf, mps, report, progress.owner) if running else contextlib.nullcontext():
            for mp in mps:
                with signals.step():  # a volume's snapshot is in the list its undo reads
                    volumes.snapshot_create(mp.volume, name)
                    done.append(mp)
        with signals.held():
            _commit(vmid, name, expected_lock)
            progress.committed = True
    except BaseException:
        with signals.held():
            if progress.prepared and not progress.committed:
                log("snapshot create failed: starting cleanup")
                _abort(vmid, name, done, expected_lock)
            if progress.owner is not None:
                owners.release(progress.owner)
        raise
    with signals.held():
        if progress.owner is not None:
            owners.release(progress.owner)
    return report


def _expect_lock(conf: Config, lock: str) -> None:
    if conf.lock != lock:
        raise LockError(f"encountered invalid lock, expected '{lock}'")


def _remove_drive(vmid: int, name: str, key: str) -> None:
    """Drop a mount point whose storage snapshot is gone from the section (its volume becomes
    the section's ``unusedN``), so an interrupted delete shows what is left to do."""
    with config_lock(vmid):
        conf = store.load(vmid)
        _expect_lock(conf, "snapshot-delete")
        section = conf.snapshot(name)
        mp = next((m for m in section.mountpoints() if m.key == key), None)
        section.delete(key)
        if mp is not None and mp.type == "volume":
            add_unused_volume(section.values, mp.volume)
        store.save(conf)


def _start_delete(
    vmid: int, name: str, expected_lock: str | None
) -> tuple[Section, owners.Owner | None]:
    """Mark the section ``snapstate: delete`` under ``lock: snapshot-delete``; a delete of its
    own (no caller's lock) records this process as the owner first."""
    with config_lock(vmid):
        conf = store.load(vmid)
        section = conf.snapshot(name)
        if conf.lock != expected_lock:
            store.check_lock(conf)
        if expected_lock is None and conf.is_template:
            raise StateError("you can't delete a snapshot if vm is a template")
        section.values["snapstate"] = "delete"
        conf.set("lock", "snapshot-delete")
        owner = None
        if expected_lock is None:
            owner = owners.claim(vmid, DELETE_OP, lock="snapshot-delete", snapshot=name)
        store.save(conf)
        return section, owner


def delete(
    vmid: int,
    name: str,
    *,
    force: bool = False,
    expected_lock: str | None = None,
) -> list[str]:
    """Delete snapshot ``name`` (storage snapshots, then the section, re-parenting children).

    A storage failure aborts, leaving ``lock: snapshot-delete`` and ``snapstate: delete``;
    with ``force`` it is returned as a problem and the section is removed anyway. Volumes that
    only the snapshot still referenced become ``unusedN`` of the main config. A delete that is
    killed is finished by the next command (its owner record).
    """
    # the mark, the storage snapshots and the section at one go: a signal acts after them,
    # never between them (a delete left half done under no owner, for a human to finish)
    with signals.step():
        section, owner = _start_delete(vmid, name, expected_lock)
        try:
            return _delete_steps(vmid, name, section, force, expected_lock)
        finally:
            if owner is not None:
                owners.release(owner)


def _delete_steps(
    vmid: int, name: str, section: Section, force: bool, expected_lock: str | None
) -> list[str]:
    problems: list[str] = []
    released: list[str] = []
    for mp in section.mountpoints():
        if mp.type != "volume":
            continue
        try:
            if name in volumes.list_snapshots(mp.volume):
                volumes.snapshot_delete(mp.volume, name)
            released.append(mp.volume)
        except CtkitError as err:
            if not force:
                raise
            problems.append(str(err))
        if not force:
            _remove_drive(vmid, name, mp.key)
    with config_lock(vmid):
        conf = store.load(vmid)
        _expect_lock(conf, "snapshot-delete")
        section = conf.snapshot(name)
        parent = section.values.get("parent")
        # the drives a delete killed earlier had done: its _remove_drive left them unusedN of
        # the section (a volume only the snapshot named would otherwise lose its last name)
        released += [v for v in section.unused().values() if v not in released]
        del conf.snapshots[name]
        for sec in [conf, *conf.snapshots.values()]:
            if sec.values.get("parent") == name:
                if parent:
                    sec.values["parent"] = parent
                else:
                    del sec.values["parent"]
        if expected_lock:
            conf.set("lock", expected_lock)
        else:
            conf.delete("lock")
        in_use = set(used_volumes(conf.values)) | set(used_volumes(conf.pending.values))
        for volid in released:
            if volid not in in_use:
                add_unused_volume(conf.values, volid)
        store.save(conf)
    return problems


# --- rollback -------------------------------------------------------------------------------

ROLLBACK_DROP = ("snapstate", "snaptime", "vmstate", "lock", "digest", "description")


def _rollback_snapshot(conf: Config, name: str) -> Section:
    """The snapshot to roll back to, after the checks that need no storage access."""
    if conf.is_template:
        raise StateError("you can't rollback if vm is a template")
    section = conf.snapshot(name)
    state = section.values.get("snapstate")
    if state:
        raise StateError(f"unable to rollback to incomplete snapshot (snapstate = {state})")
    return section


def _check_rollback_possible(section: Section, name: str) -> None:
    """Every volume of the snapshot must have its storage snapshot (nothing is changed yet). A
    snapshot with RAM state (a hand-made or foreign section: a CT has none) fails with
    Proxmox's error, which Proxmox raises after rolling the volumes and the config back."""
    if section.values.get("vmstate"):
        raise StateError("implement me - save vmstate")
    for mp in section.mountpoints():
        if mp.type != "volume":
            raise StorageError(f"snapshot rollback file/device '{mp.volume}' is not possible")
        if not volumes.volume_has_feature(mp.volume, "snapshot", name):
            raise StorageError("snapshot feature is not available")
        if name not in volumes.list_snapshots(mp.volume):
            raise StorageError(f"snapshot '{name}' of volume '{mp.volume}' does not exist")


def _lock_for_rollback(conf: Config) -> None:
    if lxcapi.is_running(conf.vmid):
        raise StateError(f"unable to rollback vm {conf.vmid}: vm is running")
    conf.set("lock", "rollback")
    store.save(conf)


def _rolled_back_values(conf: Config, snap: Section) -> dict[str, str]:
    """Snapshot values + current description and unusedN (+ volumes the snapshot lacks)."""
    keep = dict(conf.values)
    in_snapshot = set(used_volumes(snap.values))
    for volid in [*used_volumes(conf.values), *used_volumes(conf.pending.values)]:
        if volid not in in_snapshot:
            add_unused_volume(keep, volid)
    values = {k: v for k, v in keep.items() if k == "description" or k.startswith("unused")}
    for key, text in snap.values.items():
        if key not in ROLLBACK_DROP and not key.startswith("unused"):
            values[key] = text
    return values


def _finish_rollback(vmid: int, name: str) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock != "rollback":
            raise LockError("got wrong lock")
        snap = conf.snapshot(name)
        conf.values = _rolled_back_values(conf, snap)
        conf.lxc = list(snap.lxc)
        conf.pending = Section(vmid)
        conf.set("parent", name)
        store.save(conf)


def rollback(vmid: int, name: str, *, start: bool = False, log: Log = _stderr) -> None:
    """Roll the container back to snapshot ``name`` (pct.md §5); ``start`` starts it after.

    A running CT is hard-stopped first. A failure while rolling back a volume leaves
    ``lock: rollback`` in the config, as on Proxmox: the volumes may be half rolled back. A
    rollback that is killed is finished (or, killed before its lock, undone) by the next
    command, from its owner record (:func:`resume_rollback`).
    """
    stopped = locked = False
    owner: owners.Owner | None = None
    try:
        with contextlib.ExitStack() as rolling:
            # a running CT is stopped and locked under one hold of the config lock, as
            # Proxmox's: a start in between made the rollback fail after a long wait
            with config_lock(vmid):
                conf = store.load(vmid)
                section = _rollback_snapshot(conf, name)
                _check_rollback_possible(section, name)
                store.check_lock(conf)
                owner = owners.claim(
                    vmid, ROLLBACK_OP, lock="rollback", snapshot=name, mode="start" if start else ""
                )
                if lxcapi.is_running(vmid):
                    owners.update(owner, stopped=True)  # killed before its lock: started again
                    stopped = True
                    lifecycle.kill_held(conf, log=log)
                    conf = store.load(vmid)  # with the pending changes the stop applied
                # the lock, the volumes and the config at one go: a signal acts after them (the
                # rollback done), never between them (volumes rolled back under no owner)
                rolling.enter_context(signals.step())
                _lock_for_rollback(conf)
                locked = True
                # locked: a kill from here on is finished by recovery, which owes only the
                # asked-for start (it cannot tell a finished rollback from one that never began)
                owners.update(owner, stopped=start)
            _roll_volumes(section, name)
            _finish_rollback(vmid, name)
    except BaseException:
        if stopped and not locked:  # it never began: the container runs again, as it was
            with signals.held():
                _start_again(vmid, log)
        raise
    finally:
        if owner is not None:
            owners.release(owner)
    if start:
        lifecycle.start(vmid, log=log)


def _start_again(vmid: int, log: Log) -> None:
    from .recovery import restart_stopped  # (recovery imports this module)

    try:
        restart_stopped(vmid, ROLLBACK_OP, log)
    except CtkitError as err:
        log(f"WARN: CT {vmid}: starting it again failed - {err}")


def _roll_volumes(section: Section, name: str) -> None:
    for mp in section.mountpoints():
        volumes.snapshot_rollback(mp.volume, name, size=mp.size)


def resume_rollback(vmid: int, name: str) -> bool:
    """Finish a killed rollback to ``name``: every volume rolled back again (those done already
    come out the same), then the config. False when the rollback had not locked the container
    yet (nothing was rolled back) or had finished already."""
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock != "rollback" or name not in conf.snapshots:
            return False
        section = conf.snapshot(name)
    _roll_volumes(section, name)
    _finish_rollback(vmid, name)
    return True
