"""Hot-plug of ``netN``, new ``mpN`` and new ``devN`` into a running container (pct.md §2.5).

Each key is tried on a copy of the config: the pending change is applied there (allocating a new
volume, giving a new interface its MAC), then the live action runs; only when it succeeded does
the copy become the config, so the config records a change exactly when it took effect. A failed
key stays pending with Proxmox's ``unable to hotplug <key>: <reason>``; an allocated volume is
freed again.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.ctconfig.config import Config
from shared.ctconfig.pending import DEV_KEY_RE, MP_KEY_RE, apply_pending
from shared.errors import CtkitError
from shared.runtime import lxcapi, passthrough
from shared.runtime.cgroups import detect_layout
from shared.runtime.ctview import config_idmap
from shared.runtime.mphotplug import hotplug_mount
from shared.runtime.volumes import allocator, free

Live = Callable[[Config, Config, str, int], None]


def is_hotplug_key(key: str) -> bool:
    return any(r.fullmatch(key) for r in (DEV_KEY_RE, MP_KEY_RE))


def hotplug_keys(conf: Config, keys: set[str], errors: dict[str, str]) -> None:
    """Apply ``keys`` (net/mp/dev, classified live by the caller) to the running CT."""
    pid = lxcapi.init_pid(conf.vmid)
    for key in sorted(keys):
        if pid is None:
            errors[key] = f"unable to hotplug {key}: CT {conf.vmid} not running"
            continue
        trial = conf.copy()
        result = apply_pending(trial, keys={key}, alloc=allocator(), free=free)
        if result.errors:
            errors.update(result.errors)
            continue
        try:
            _live_action(key)(conf, trial, key, pid)
        except CtkitError as err:
            for volid in result.allocated:
                free(volid)
            errors[key] = f"unable to hotplug {key}: {err}"
            continue
        conf.values, conf.pending = trial.values, trial.pending


def _live_action(key: str) -> Live:
    return _mountpoint if MP_KEY_RE.fullmatch(key) else _device


def _mountpoint(old: Config, new: Config, key: str, pid: int) -> None:
    mp = next(m for m in new.mountpoints() if m.key == key)
    hotplug_mount(new.vmid, mp, pid, unprivileged=new.unprivileged)


def _device(old: Config, new: Config, key: str, pid: int) -> None:
    dev = passthrough.device(new.devices()[key])
    passthrough.hotplug(new.vmid, dev, config_idmap(new), pid, detect_layout())
