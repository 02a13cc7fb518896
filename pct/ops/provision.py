"""Shared steps of create and restore: new-volume syntax, allocation, staging, cleanup."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared import owner as owners
from shared import paths, signals
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import (
    MountPoint,
    add_unused_volume,
    drop_unused_volumes,
    new_volume_size,
    parse_new_volume,
    random_mac,
    volume_owner,
)
from shared.ctconfig.options import NET_SCHEMA
from shared.ctconfig.pending import referenced_volumes
from shared.errors import (
    AlreadyExistsError,
    CtkitError,
    LockError,
    ParamError,
    StateError,
    StorageError,
)
from shared.formats.types import FormatError
from shared.locks import config_lock
from shared.runtime import lxcapi, template, unfinished
from shared.runtime.guestview import config_root_ids, guest_config
from shared.runtime.mounts import MountedTree, mount_all
from shared.runtime.teardown import owned_volumes
from shared.storage.api import get_storage
from shared.storage.hostreach import set_host_reach
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import alloc_volume, free_when_released

from .staging import prepare_staging_dir

if TYPE_CHECKING:
    from shared.guest.setup import GuestSetup

Log = Callable[[str], None]
# what :func:`detect_guest` imports: ``preload.loading`` them while the archive is extracted
GUEST_MODULES = ("shared.guest.setup", "shared.guest.detect")
CREATE_LOCK = unfinished.CREATE_LOCK
CREATE_LOCK_TIMEOUT = 5
DISK_KEY_RE = re.compile(r"rootfs|mp\d+")
NET_KEY_RE = re.compile(r"net\d+")


def exists_message(vmid: int) -> str:
    return f"CT {vmid} already exists on node '{paths.node_name()}'"


def normalize_disk_params(params: dict[str, str], storage: str, log: Log) -> None:
    """A bare number for rootfs/mpN means ``<storage>:<n>``; unusedN cannot be created."""
    for key in list(params):
        if key.startswith("unused"):
            log(f"ignoring '{key}', cannot create/restore with unused volume")
            del params[key]
        elif DISK_KEY_RE.fullmatch(key):
            volume, sep, rest = params[key].partition(",")
            if re.fullmatch(r"\d+(\.\d+)?", volume.removeprefix("volume=")):
                params[key] = f"{storage}:{volume.removeprefix('volume=')}{sep}{rest}"
    if any(k.startswith("mp") for k in params) and "rootfs" not in params:
        raise CtkitError("mount points configured, but 'rootfs' not set - aborting")


def check_rootdir_storages(conf: Config) -> None:
    for mp in conf.mountpoints():
        new = parse_new_volume(mp.volume) if mp.type == "volume" else None
        if new is not None and new[0] is not None:
            store_ = get_storage(new[0])
            if not store_.has_content("rootdir"):
                raise StorageError(f"storage '{new[0]}' does not support container directories")


@dataclass
class Allocation:
    """Volumes allocated for a new container, freed again if anything fails; each is noted in
    ``owner``'s record too, for the command that recovers a killed create or restore."""

    vmid: int
    volids: list[str] = field(default_factory=list)
    owner: owners.Owner | None = None

    def free_all(self, log: Log) -> list[str]:
        """Free every volume; returns those freed (one that fails stays in ``volids``). An
        image's loop device that the kernel lets go of a moment after the unmount is waited
        for: freed at once, a signal's cleanup found it busy and left the image behind."""
        freed: list[str] = []
        kept: list[str] = []
        for volid in reversed(self.volids):
            (freed if free_when_released(volid, log) else kept).append(volid)
        self.volids[:] = reversed(kept)
        return freed

    def keep_for_recovery(self, log: Log) -> bool:
        """After :meth:`free_all`: True when volumes are left. Their record then stays, with the
        locked config that holds the id, so that the next command frees them; removing both
        left volumes named by nothing."""
        if not self.volids:
            return False
        log(f"CT {self.vmid}: the next command frees the volume(s) left: {', '.join(self.volids)}")
        self.owner = None  # not released: the record is what the next command recovers from
        return True


def allocate(conf: Config, alloc: Allocation, default_storage: str) -> None:
    """Replace every ``STORAGE:SIZE`` mount point by a new volume (with ``size=``)."""
    uid, gid = config_root_ids(conf)
    for mp in conf.mountpoints():
        new = parse_new_volume(mp.volume) if mp.type == "volume" else None
        if new is None:
            continue
        sid, gib = new
        size = new_volume_size(gib)
        volid = alloc_volume(
            sid or default_storage,
            conf.vmid,
            size,
            root_uid=uid,
            root_gid=gid,
            # on record before it is formatted: a kill during mkfs leaves no nameless volume
            reserved=lambda new: unfinished.note_volumes(alloc.owner, [*alloc.volids, new]),
        )
        alloc.volids.append(volid)
        conf.set(mp.key, mp.replace(volume=volid, size=size))


def check_given_volumes(conf: Config, *, skip: int | None = None) -> None:
    """Refuse an existing volume given as a mount point (not ``STORAGE:SIZE``) that a
    container's config names. Create and restore fill such a volume in place: a failed fill
    left the archive's files in that container (a running one's root too), a successful one
    two containers on one volume. With ``--force`` the replaced container counts as well: its
    volumes stay as they are until the restore commits. ``skip``: the id whose config on disk
    is the new one (a create's, locked)."""
    given = {
        mp.volume
        for mp in conf.mountpoints()
        if mp.type == "volume" and parse_new_volume(mp.volume) is None
    }
    if not given:
        return
    for vmid in store.list_vmids():
        other = store.load_or_none(vmid) if vmid != skip else None
        for volid in owned_volumes(other) if other is not None else ():
            if volid in given:
                raise StateError(f"volume '{volid}' is in use by CT {vmid}")


def create_locked_config(
    conf: Config, *, force: bool = False, owner_op: str | None = None
) -> owners.Owner | None:
    """Write the new config with ``lock: create`` (only over an existing one with force). With
    ``owner_op`` (:mod:`shared.runtime.unfinished`), this process is recorded as its owner
    first, and the record returned."""
    with config_lock(conf.vmid, timeout=CREATE_LOCK_TIMEOUT):
        old = store.load_or_none(conf.vmid)
        if old is not None and not force:
            raise AlreadyExistsError(exists_message(conf.vmid))
        if old is not None:
            store.check_lock(old)
        conf.set("lock", "create")
        owner = unfinished.claim(conf.vmid, owner_op) if owner_op else None
        store.save(conf)
    return owner


def staging_dir(vmid: int) -> Path:
    return paths.lxc_rootfs(vmid)


@contextlib.contextmanager
def staged(
    conf: Config, include: Callable[[MountPoint], bool] | None = None
) -> Iterator[MountedTree]:
    """Mount the new volumes at ``<lxcpath>/<vmid>/rootfs`` (ro ignored) for extraction (or a
    copy), and check that what the block wrote is on the storage (``MountedTree.writing``)."""
    if lxcapi.is_running(conf.vmid):
        raise CtkitError(f"CT {conf.vmid} is running")
    staging = prepare_staging_dir(conf.vmid)
    # the new kind's reach, not the old one's: a privileged container left its directory 0700
    # (an unprivileged tar could not reach the staging mount), an unprivileged one 0755 (host
    # users could reach a privileged archive's files while they were extracted)
    set_host_reach(staging.parent, config_root_ids(conf))
    tree = mount_all(
        conf,
        staging,
        root_ids=config_root_ids(conf),
        honour_ro=False,
        include=include or (lambda _mp: True),
    )
    try:
        with tree.writing():  # what was written is on the storage, or this fails
            yield tree
    finally:
        with signals.held():  # all unmounted, or the volumes could not be freed
            tree.unmount()


def remove_config(vmid: int, log: Log) -> None:
    try:
        store.remove(vmid)
    except CtkitError as err:
        log(f"unable to remove config of CT {vmid} - {err}")


def lock_existing(vmid: int) -> owners.Owner:
    """Put ``lock: create`` on an existing, stopped container and change nothing else; this
    process is recorded as its owner (a restore replacing it) first.

    ``CT is locked (...)`` when it already has a lock; ``can't overwrite running container``
    when it runs.
    """
    with config_lock(vmid, timeout=CREATE_LOCK_TIMEOUT):
        old = store.load(vmid)
        store.check_lock(old)
        if lxcapi.is_running(vmid):
            raise StateError("can't overwrite running container")
        locked = old.copy()
        locked.set("lock", CREATE_LOCK)
        owner = unfinished.claim(vmid, unfinished.RESTORE, replacing=True)
        store.save(locked)
    return owner


def record_new_volumes(vmid: int, volids: list[str]) -> None:
    """Name the new volumes as ``unusedN`` of the existing config :func:`lock_existing` locked,
    before they are filled: its config stays the old one until the commit, and a process
    killed meanwhile runs no cleanup. So they are never nameless: after ``pct unlock`` they
    show as unused volumes, and ``pct destroy`` (or ``pct set --delete unusedN``) frees them."""
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock != CREATE_LOCK:
            raise LockError(
                f"CT {vmid} is no longer locked for creation - config changed meanwhile"
            )
        for volid in volids:
            add_unused_volume(conf.values, volid)
        store.save(conf)


def release_create_lock(
    vmid: int, log: Log, freed: Sequence[str] = (), allocated: Sequence[str] = ()
) -> bool:
    """Undo :func:`lock_existing` after a failure: drop ``lock: create`` (only that lock) and
    the ``unusedN`` entries :func:`record_new_volumes` made for the ``freed`` volumes (also
    when ``pct unlock`` took the lock meanwhile: they name volumes that are gone). The image
    directories the ``allocated`` volumes were made in get back the old container's reach.
    False when the config could not be written: the caller's owner record must stay then, for
    the next command to finish this (a full /etc/pve left the container locked for good)."""
    try:
        with config_lock(vmid):
            conf = store.load(vmid)
            before = dict(conf.values)
            drop_unused_volumes(conf.values, freed)
            if conf.lock == CREATE_LOCK:
                conf.delete("lock")
            if conf.values != before:
                store.save(conf)
            _give_back_reach(conf, allocated)
    except CtkitError as err:
        log(f"unable to remove the 'create' lock of CT {vmid} - {err}")
        return False
    return True


def _give_back_reach(conf: Config, allocated: Sequence[str]) -> None:
    """An allocation gave ``images/<vmid>`` the new kind's mode: an unprivileged archive
    restored over a privileged container left the old one's setuid files reachable by every
    host user (0755) after its failure."""
    ids = config_root_ids(conf)
    for volid in allocated:
        with contextlib.suppress(CtkitError, OSError):
            imgdir = get_storage(parse_volume_id(volid)[0]).image_dir(conf.vmid)
            if imgdir.is_dir() and not imgdir.is_symlink():
                set_host_reach(imgdir, ids)


def commit_config(conf: Config) -> Config:
    """Write the finished ``conf`` (without lock) over its ``lock: create`` placeholder.

    Returns the config it replaced. Refuses when the placeholder is gone or was unlocked
    meanwhile (``pct unlock``), because then someone else may own the id.
    """
    with config_lock(conf.vmid):
        current = store.load_or_none(conf.vmid)
        if current is None or current.lock != CREATE_LOCK:
            raise LockError(
                f"CT {conf.vmid} is no longer locked for creation - config changed meanwhile"
            )
        conf.delete("lock")
        store.save(conf)
    return current


def replaced_volumes(old: Config, new: Config) -> list[str]:
    """The volumes of a replaced config that the new one does not use, those only a snapshot
    of the old one names among them (destroy frees them too)."""
    keep = set(referenced_volumes(new))
    return [v for v in owned_volumes(old) if v not in keep]


def free_replaced_volumes(old: Config, new: Config, log: Log) -> None:
    """Free the volumes of a replaced config that the new one does not use (owned ones only).
    One that cannot be freed now (busy, its storage disabled or gone from storage.cfg) stays
    named in the new config as ``unusedN``: warned about only, it was named by nothing, and
    not even ``pct destroy`` found it again."""
    kept: list[str] = []
    for volid in replaced_volumes(old, new):
        if volume_owner(volid) != old.vmid:
            log(f"ignore deletion of '{volid}', CT {old.vmid} isn't the owner!")
        elif not free_when_released(volid, log):
            kept.append(volid)
    if kept:
        _keep_as_unused(new.vmid, kept, log)


def _keep_as_unused(vmid: int, volids: Sequence[str], log: Log) -> None:
    try:
        with config_lock(vmid):
            conf = store.load(vmid)
            for volid in volids:
                if (key := add_unused_volume(conf.values, volid)) is not None:
                    log(f"CT {vmid}: kept '{volid}' as '{key}' - free it with 'pct destroy' or "
                        f"'pct set {vmid} --delete {key}' once its storage can")  # fmt: skip
            store.save(conf)
    except (CtkitError, FormatError) as err:
        log(f"unable to name the volume(s) left in CT {vmid}'s config - {err}")


def convert_to_template(
    conf: Config,
    alloc: Allocation | None = None,
    after_each: Callable[[Config], None] | None = None,
) -> None:
    """Turn every volume into a base volume and set ``template: 1`` (Proxmox's template_create).

    ``alloc`` follows the renames, so that a later failure still frees the right volumes;
    ``after_each`` (e.g. saving the config) runs after every rename, so that an interrupted
    conversion never leaves a renamed volume the config does not name.
    """

    def renamed(old: str, new: str) -> None:
        if alloc is not None and old in alloc.volids:
            alloc.volids[alloc.volids.index(old)] = new

    template.convert(conf, after_each=after_each, renamed=renamed)


def take_template_flag(conf: Config) -> bool:
    """``template: 1`` given for a new container (create, restore): taken out of the config
    until its volumes are filled (a template's volumes are mounted read-only, and tar could
    write nothing), then :func:`convert_to_template` makes them base volumes and sets it, as a
    restored template backup is converted."""
    given = conf.is_template
    conf.delete("template")
    return given


def apply_defaults(conf: Config) -> None:
    """``hostname ||= CT<id>``, ``memory ||= 512``, ``swap //= 512`` (pct.md §4.2.8)."""
    if not conf.get_raw("hostname"):
        conf.set("hostname", f"CT{conf.vmid}")
    if conf.get_raw("memory") in (None, "", "0"):
        conf.set("memory", 512)
    if conf.get_raw("swap") is None:
        conf.set("swap", 512)


def remove_staging_dirs(vmid: int) -> None:
    """Remove ``<lxcpath>/<vmid>/rootfs`` and the directory itself when they are empty."""
    for path in (staging_dir(vmid), paths.lxc_dir(vmid)):
        with contextlib.suppress(OSError):
            path.rmdir()


def remove_locked_config(vmid: int, log: Log) -> None:
    """Remove a new container's config after a failure, only while it is still ours."""
    try:
        with config_lock(vmid):
            conf = store.load_or_none(vmid)
            if conf is not None and conf.lock == CREATE_LOCK:
                store.remove(vmid)
    except CtkitError as err:
        log(f"unable to remove config of CT {vmid} - {err}")


def prefixed(err: CtkitError, prefix: str) -> CtkitError:
    """``err`` with ``prefix`` in front (``unable to create CT 100 - ``); class and exit code kept.

    A ParamError becomes one line: inside the task it is not a 400 listing any more.
    """
    if isinstance(err, ParamError):
        text = "; ".join(f"{k}: {v}" for k, v in err.errors.items()) or err.message
        new = CtkitError(prefix + text, hint=err.hint)
        new.exit_code = err.exit_code
        return new
    new = err.__class__.__new__(err.__class__)
    new.__dict__.update(err.__dict__)
    new.message = prefix + err.message
    new.args = (new.message,)
    return new


def complete_given_nets(conf: Config, params: Mapping[str, str]) -> None:
    """Interfaces given on the command line get ``type=veth`` and a MAC (pct.md §9 case 22)."""
    for key in params:
        if NET_KEY_RE.fullmatch(key) and key in conf.values:
            net = NET_SCHEMA.parse(conf.values[key])
            net["type"] = "veth"
            net.setdefault("hwaddr", random_mac())
            conf.values[key] = NET_SCHEMA.render(net)


def detect_guest(conf: Config, rootdir: Path, log: Log) -> GuestSetup:
    """OS detection (stored as ``ostype``) and, when unset, ``arch`` from the ELF of /bin/sh;
    returns the guest setup for the detected distribution."""
    from shared.guest.detect import resolve_arch  # GUEST_MODULES, loaded while extracting
    from shared.guest.setup import GuestSetup

    setup = GuestSetup.for_rootfs(
        rootdir, guest_config(conf), log=log, warn=lambda w: log(f"WARN: {w}")
    )
    conf.set("ostype", setup.ostype)
    if conf.get_raw("arch") is None:
        arch, messages = resolve_arch(rootdir, setup.ostype)
        for message in messages:
            log(message)
        conf.set("arch", arch)
    return setup
