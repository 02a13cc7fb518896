"""``pct destroy``: free every volume the container owns, then remove its config (the work is
:mod:`shared.runtime.teardown`'s, which the recovery of a killed destroy shares)."""

from __future__ import annotations

from collections.abc import Callable

from shared import owner as owners
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.errors import StateError
from shared.locks import config_lock
from shared.runtime import lifecycle, lxcapi, mounts, recovery, teardown

from . import livenote

Log = Callable[[str], None]


def _check_lock(conf: Config) -> None:
    """Any lock refuses, but that of a destroy that failed half-way: this one finishes it."""
    if conf.lock != teardown.LOCK:
        store.check_lock(conf)


def destroy(
    vmid: int,
    *,
    force: bool = False,
    purge: bool = False,
    unreferenced: bool = False,
    log: Log = print,
) -> None:
    mode = teardown.mode(unreferenced=unreferenced, purge=purge)
    if recovery.recover(vmid, log) is not None and not store.exists(vmid):
        # a create, restore or destroy that was killed, finished by its recovery
        if purge:
            teardown.remove_from_jobs(vmid, log)
        return
    # one hold of the lock from the checks through the stop to the last volume: no start gets in
    # between (as Proxmox's)
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_protection(conf, f"can't remove CT {vmid}")
        _check_lock(conf)
        teardown.check_no_linked_clones(conf)
        if lxcapi.is_running(vmid):
            if not force:
                raise StateError(f"unable to destroy CT {vmid} - container is running")
            log(f"forced to stop CT {vmid} before destroying!")
            lifecycle.kill_held(conf)
            conf = store.load(vmid)  # with the pending changes the stop applied
        # a CT that stopped a moment ago (by itself, or by another command) may still hold the
        # loop devices of its raw volumes: freeing one would find it in use
        mounts.wait_released(conf)
        # keeps the id reserved while volumes go, and every volume listed: when one cannot be
        # freed, the command fails and the config stays (locked) to find the rest by; killed,
        # the next command finishes it (the owner record)
        locked = conf.copy()
        locked.set("lock", teardown.LOCK)
        owner = owners.claim(vmid, teardown.OWNER_OP, lock=teardown.LOCK, mode=mode)
        store.save(locked)
        try:
            teardown.remove(conf, mode, log)
        except Exception:
            owners.release(owner)  # the locked config lists what could not be freed
            raise
        # (interrupted by a signal - not an Exception - the record stays: the next command
        # finishes the destroy the user asked for, as after a kill; some volumes are gone)
        owners.release(owner)
        livenote.done(vmid)  # a killed pct set's note, of an instance that is gone
