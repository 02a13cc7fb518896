"""``pct mount`` / ``pct unmount``: the stopped CT's file systems on the host, under lock."""

from __future__ import annotations

from collections.abc import Callable

from shared import owner as owners
from shared import paths
from shared.ctconfig import store
from shared.ctconfig.options import MOUNTED_LOCK
from shared.errors import CtkitError, LockError, StateError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery
from shared.runtime.guestview import config_root_ids
from shared.runtime.mounts import MOUNT_OP, mount_all, unmount_below
from shared.storage.hostreach import set_host_reach


def mount(vmid: int, log: Callable[[str], None] = print) -> str:
    """Mount the stopped container's volumes at its rootfs path under ``lock: mounted``. Until
    they are all mounted an owner record says who does it: a kill leaves nothing the next
    command does not undo (the mounts and the lock)."""
    recovery.recover(vmid, log)  # a dead owner's record is undone, never replaced
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        if lxcapi.is_running(vmid):
            raise StateError(f"CT {vmid} is running")
        owner = owners.claim(vmid, MOUNT_OP, lock=MOUNTED_LOCK)
        conf.set("lock", MOUNTED_LOCK)
        store.save(conf)
        target = paths.lxc_rootfs(vmid)
        ids = config_root_ids(conf)
        try:
            _hide_privileged(vmid, ids)
            mount_all(conf, target, root_ids=ids)
        except BaseException:
            conf.delete("lock")
            store.save(conf)
            owners.release(owner)
            raise
        owners.release(owner)
    return f"mounted CT {vmid} in '{target}'"


def _hide_privileged(vmid: int, ids: tuple[int, int]) -> None:
    lxcdir = paths.lxc_dir(vmid)
    lxcdir.mkdir(parents=True, exist_ok=True)
    set_host_reach(lxcdir, ids)


def unmount(vmid: int) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.lock not in (None, MOUNTED_LOCK):
            raise LockError(f"CT is locked ({conf.lock})")
        problems = unmount_below(paths.lxc_rootfs(vmid), lazy=False)
        if problems:
            raise CtkitError("; ".join(problems))
        if conf.lock == MOUNTED_LOCK:
            conf.delete("lock")
            store.save(conf)
