"""``pct set`` and ``pct unlock``: config changes under the lock, with hot-plug on a running CT."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.pending import apply_pending, update_pending
from shared.errors import CtkitError, ParamError
from shared.locks import config_lock
from shared.runtime import lxcapi, recovery
from shared.runtime.cgroups import CGroup
from shared.runtime.ctview import limits
from shared.runtime.lxcconf import pick_cpus
from shared.runtime.volumes import allocator, free, recorded, size_of

from . import livenote
from .valuecheck import value_check

Log = Callable[[str], None]


def set_config(
    vmid: int,
    values: Mapping[str, str],
    *,
    delete: str = "",
    revert: str = "",
    digest: str | None = None,
    force: bool = False,
    log: Log = print,
) -> None:
    recovery.recover(vmid, log)  # a dead owner's record is undone, never replaced
    with config_lock(vmid):
        conf = store.load(vmid)
        for warning in conf.warnings:  # a line it could not read is not written back: say so
            log(warning)
        running = lxcapi.is_running(vmid)
        if running:
            _finish_killed(conf, log)
        result = update_pending(
            conf,
            values,
            delete,
            revert,
            running=running,
            digest=digest,
            force=force,
            check=value_check,
        )
        for warning in result.warnings:
            log(warning)
        if running:
            # on record as pending before anything is plugged (as Proxmox does): a command
            # killed in the middle leaves the change in pct pending, not lost
            store.save(conf)
            keys = result.plan.fast | result.plan.live if result.plan else set()
            live = livenote.noted(keys)
            with livenote.noting(vmid, live, lxcapi.init_pid(vmid) if live else None):
                _save_applied(conf, _hotplug(conf, keys))
        else:
            # only this command's keys, as Proxmox applies them: what else is pending (a
            # `pct set` of a running CT, since stopped) waits for the start or a revert
            applied = apply_pending(
                conf, keys=result.modified, alloc=recorded(), free=free, volume_size=size_of
            )
            for warning in applied.warnings:
                log(warning)
            _save_applied(conf, applied)


def _save_applied(conf: Config, applied: Any) -> None:
    """Saved either way: what could not be applied stays pending, visible in pct pending."""
    store.save(conf)
    if applied.errors:
        raise ParamError(applied.errors)


def _finish_killed(conf: Config, log: Log) -> None:
    """A ``pct set`` killed during its live changes: those keys are made live as the config
    says (see :mod:`.livenote`), before this command changes anything."""
    keys, init = livenote.owed(conf.vmid, lambda: lxcapi.init_pid(conf.vmid))
    if not keys or init is None:
        return
    log(
        f"CT {conf.vmid}: an earlier pct set ended during its live changes - making "
        f"{', '.join(keys)} live as the config says"
    )
    errors = _apply_cgroup(conf, set(keys) & livenote.LIMIT_KEYS)
    from .hotplug import resync_network  # netlink: only when needed

    for key in sorted(set(keys) - livenote.LIMIT_KEYS):
        try:
            resync_network(conf, key, init)
        except CtkitError as err:
            errors[key] = str(err)
    livenote.done(conf.vmid)  # not after an interrupt: the next command tries again
    for key, reason in errors.items():
        log(f"WARN: CT {conf.vmid}: {key} not made live again - {reason}")


def _hotplug(conf: Config, keys: set[str]) -> Any:
    """Apply the keys a running CT takes now: config-only ones, and cgroup limits live."""
    from .hotplug import hotplug_keys, is_hotplug_key  # namespaces, netlink: only when needed

    live_now = keys & livenote.LIMIT_KEYS
    plugged = {k for k in keys if is_hotplug_key(k)}
    work = conf.copy()
    result = apply_pending(work, keys=keys - plugged, alloc=allocator(), free=free)
    if live_now and not result.errors:
        errors = _apply_cgroup(work, live_now)
        if errors:
            # the limits that were written go back to the config's: none of them is recorded
            _apply_cgroup(conf, live_now - errors.keys())
            raise ParamError(errors)
    hotplug_keys(work, plugged, result.errors, store.save)
    conf.values, conf.pending = work.values, work.pending
    return result


def _apply_cgroup(conf: Config, keys: set[str]) -> dict[str, str]:
    """Write the changed limits to the CT's cgroup; errors by the option that caused them."""
    cg = CGroup(conf.vmid)
    lim = limits(conf)
    host = os.cpu_count() or 1
    cores = conf.get("cores")
    steps: list[tuple[set[str], Callable[[], None]]] = [
        ({"memory", "swap"}, lambda: cg.set_memory(lim.memory, lim.swap)),
        ({"cpulimit"}, lambda: cg.set_cpulimit(lim.cpulimit)),
        ({"cpuunits"}, lambda: cg.set_cpuunits(lim.cpuunits)),
        (
            {"cores"},
            lambda: cg.set_cpuset(pick_cpus(int(cores), host) if cores else f"0-{host - 1}"),
        ),
    ]
    errors: dict[str, str] = {}
    for group, step in steps:
        if keys & group:
            try:
                step()
            except (CtkitError, OSError) as err:
                if not cg.exists():  # it stopped meanwhile: its next start takes the config's
                    return {}
                errors.update({k: str(err) for k in sorted(keys & group)})
    return errors


def unlock(vmid: int, log: Log = print) -> None:
    """Remove the lock; a dead backup's lock is recovered (thaw, restart, cleanup) instead, and
    a killed create or restore undone."""
    if recovery.recover(vmid, log) is not None:
        conf = store.load_or_none(vmid)
        if conf is None or not conf.lock:
            return
    with config_lock(vmid):
        conf = store.load(vmid)
        store.remove_lock(conf)
        store.save(conf)
