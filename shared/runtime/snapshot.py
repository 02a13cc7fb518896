"""Container snapshots: a ``[name]`` config section plus a storage snapshot of each volume.

Used by vzdump's snapshot mode (the fixed name ``vzdump``) and by pct's snapshot commands.
A running container is frozen only for the instant the volume snapshots are taken, after its
file systems were synced (``syncfs``) and, where the storage needs it, frozen (``FIFREEZE``);
it is thawed on every exit path. Spec pct.md §5.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..ctconfig import store
from ..ctconfig.config import Config, Section
from ..ctconfig.mountpoints import MountPoint
from ..errors import CtkitError, LockError, StateError, StorageError
from ..locks import config_lock
from ..storage import volumes
from . import lxcapi
from .cgroups import CGroup

Include = Callable[[MountPoint], bool]
RESERVED = ("current", "vzdump")
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878
SNAPSHOT_DROP = ("lock", "digest", "snapstate", "snaptime", "vmstate", "description", "parent")

_libc = ctypes.CDLL(None, use_errno=True)


def _all(_mp: MountPoint) -> bool:
    return True


def snapshot_volumes(conf: Section, include: Include = _all) -> list[MountPoint] | None:
    """The included mount points, or None when one of them cannot be snapshotted."""
    mps = [mp for mp in conf.mountpoints() if include(mp)]
    for mp in mps:
        if mp.type != "volume" or not volumes.volume_has_feature(mp.volume, "snapshot"):
            return None
    return mps


def syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class FreezeReport:
    seconds: float = 0.0


@contextlib.contextmanager
def _quiesced(conf: Config, mps: list[MountPoint], report: FreezeReport) -> Iterator[None]:
    """Freeze the CT's cgroup, sync and fsfreeze its volumes; undo all of it afterwards."""
    pid = lxcapi.init_pid(conf.vmid)
    if pid is None:
        yield
        return
    fds = []
    for mp in mps:
        with contextlib.suppress(OSError):
            fds.append((mp, os.open(f"/proc/{pid}/root{mp.path}", os.O_RDONLY | os.O_DIRECTORY)))
    frozen_fs: list[int] = []
    started: float | None = None
    try:
        # flush while the container still runs: the syncfs under the freeze then only writes
        # what changed in the last moment, so the frozen window stays short however much was
        # written before (a full flush of a busy 1 GB tree took 300+ ms, frozen)
        for _mp, fd in fds:
            syncfs(fd)
        started = time.monotonic()
        with CGroup(conf.vmid).frozen():
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


def _section_copy(conf: Config, name: str, description: str | None) -> Section:
    section = Section(conf.vmid, dict(conf.values), list(conf.lxc))
    for key in [k for k in section.values if k in SNAPSHOT_DROP or k.startswith("unused")]:
        del section.values[key]
    if conf.parent:
        section.values["parent"] = conf.parent
    section.values["snaptime"] = str(int(time.time()))
    section.values["snapstate"] = "prepare"
    if description:
        section.description = description
    return section


def _prepare(vmid: int, name: str, description: str | None, expected_lock: str | None) -> Config:
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.is_template:
            raise StateError("you can't take a snapshot if it's a template")
        if conf.lock != expected_lock:
            store.check_lock(conf)
        if name in conf.snapshots:
            raise CtkitError(f"snapshot name '{name}' already used")
        conf.snapshots[name] = _section_copy(conf, name, description)
        conf.set("lock", "snapshot")
        store.save(conf)
        return conf


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
) -> FreezeReport:
    """Take snapshot ``name``; returns how long the container was frozen.

    ``expected_lock`` is a lock the caller itself holds (vzdump's ``backup``): it is swapped for
    ``snapshot`` during the operation and put back afterwards.
    """
    if name in RESERVED and not allow_reserved:
        raise CtkitError(f"unable to use snapshot name '{name}' (reserved name)")
    conf = _prepare(vmid, name, description, expected_lock)
    report = FreezeReport()
    done: list[MountPoint] = []
    try:
        mps = snapshot_volumes(conf, include)
        if mps is None:
            raise StorageError("snapshot feature is not available")
        running = lxcapi.is_running(vmid)
        with _quiesced(conf, mps, report) if running else contextlib.nullcontext():
            for mp in mps:
                volumes.snapshot_create(mp.volume, name)
                done.append(mp)
    except BaseException:
        _abort(vmid, name, done, expected_lock)
        raise
    _commit(vmid, name, expected_lock)
    return report


def delete(
    vmid: int,
    name: str,
    *,
    force: bool = False,
    expected_lock: str | None = None,
) -> list[str]:
    """Delete snapshot ``name`` (storage snapshots, then the section, re-parenting children)."""
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock != expected_lock and not force:
            store.check_lock(conf)
        section = conf.snapshot(name)
        section.values["snapstate"] = "delete"
        conf.set("lock", "snapshot-delete")
        store.save(conf)
    problems: list[str] = []
    for mp in section.mountpoints():
        if mp.type != "volume":
            continue
        try:
            if name in volumes.list_snapshots(mp.volume):
                volumes.snapshot_delete(mp.volume, name)
        except CtkitError as err:
            if not force:
                raise
            problems.append(str(err))
    with config_lock(vmid):
        conf = store.load(vmid)
        parent = conf.snapshots[name].values.get("parent")
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
        store.save(conf)
    return problems
