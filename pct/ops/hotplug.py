"""Hot-plug of ``netN``, new ``mpN`` and new ``devN`` into a running container (pct.md §2.5),
and hot-unplug of a deleted ``mpN``.

Each key is tried on a copy of the config: the pending change is applied there (allocating a new
volume, giving a new interface its MAC), then the live action runs; only when it succeeded does
the copy become the config, so the config records a change exactly when it took effect. A failed
key stays pending with Proxmox's ``unable to hotplug <key>: <reason>``; an allocated volume is
freed again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared import paths, signals
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint
from shared.ctconfig.options import NET_SCHEMA
from shared.ctconfig.pending import (
    DEV_KEY_RE,
    MP_KEY_RE,
    NET_KEY_RE,
    apply_pending,
    referenced_volumes,
)
from shared.errors import CtkitError
from shared.net import hotplug as net_hotplug
from shared.runtime import lxcapi, nsenter, passthrough
from shared.runtime.beneath import path_parts
from shared.runtime.cgroups import detect_layout
from shared.runtime.guestview import config_idmap, guest_config
from shared.runtime.mphotplug import hotplug_mount, unplug_mount
from shared.runtime.startcheck import check_bridge, check_unsupported
from shared.runtime.volumes import free, recorded, size_of
from shared.storage import loop
from shared.storage.volumes import mounted_devices, volume_format

Live = Callable[[Config, Config, str, int], None]
LOCKED_MOUNT = (
    "stays mounted until the CT stops: an older ctkit started it, and the kernel locks the "
    "mount points such a start gave an unprivileged CT"
)


def is_hotplug_key(key: str) -> bool:
    return any(r.fullmatch(key) for r in (DEV_KEY_RE, MP_KEY_RE, NET_KEY_RE))


def hotplug_keys(
    conf: Config, keys: set[str], errors: dict[str, str], save: Callable[[Config], None]
) -> None:
    """Apply ``keys`` (net/mp/dev, classified live by the caller) to the running CT, saving the
    config after each key that took effect."""
    pid = lxcapi.init_pid(conf.vmid)
    for key in sorted(keys):
        if pid is None:
            errors[key] = f"unable to hotplug {key}: CT {conf.vmid} not running"
            continue
        if NET_KEY_RE.fullmatch(key):
            keep_mac(conf, key)
        trial = conf.copy()
        # a new volume is named in the saved config before it is plugged in (see recorded)
        alloc = recorded()
        result = apply_pending(trial, keys={key}, alloc=alloc, free=free, volume_size=size_of)
        if result.errors:
            errors.update(result.errors)
            continue
        # a signal between the live change and its record left a mount point mounted while the
        # config called it pending, and the same command again mounted a second volume over
        # it: the change and its record are one step, and the signal acts after it
        with signals.step():
            try:
                _live_action(key)(conf, trial, key, pid)
            except Skip:
                _free_all(result.allocated)
                continue
            except CtkitError as err:
                _free_all(result.allocated)
                errors[key] = f"unable to hotplug {key}: {err}"
                continue
            conf.values, conf.pending = trial.values, trial.pending
            save(conf)


def _free_all(volids: list[str]) -> None:
    """Free the volumes a failed key allocated; one that cannot be (still in use) is said, and
    left on the owner record for the next command, not raised over the key's own error."""
    for volid in volids:
        try:
            free(volid)
        except CtkitError as err:
            print(f"WARN: {err}", file=sys.stderr)


class Skip(Exception):
    """The change cannot be made live: it stays pending (Proxmox's ``skip``)."""


def _live_action(key: str) -> Live:
    if NET_KEY_RE.fullmatch(key):
        return _network
    return _mountpoint if MP_KEY_RE.fullmatch(key) else _device


def keep_mac(conf: Config, key: str) -> None:
    """A changed ``netN`` given without ``hwaddr`` keeps the interface's MAC (Proxmox would make
    a new one and so re-create the interface, which drops the guest's leases and connections)."""
    text = conf.pending.values.get(key)
    old = conf.nets().get(key)
    if text is None or not old or not old.get("hwaddr"):
        return
    net = NET_SCHEMA.parse(text)
    if not net.get("hwaddr"):
        net["hwaddr"] = old["hwaddr"]
        conf.pending.values[key] = NET_SCHEMA.render(net)


def _network(old: Config, new: Config, key: str, pid: int) -> None:
    index = int(key[3:])
    if key not in new.values:
        net_hotplug.remove(new.vmid, index, old.nets().get(key) or {}, pid)
        return
    net = new.nets()[key]
    before = old.nets().get(key) if key in old.values else None
    if before is not None and _changed(before, net, "type"):
        raise Skip
    try:
        check_bridge(key, net)  # this interface's: another one's bridge is not this change's
    except CtkitError as err:  # Proxmox's "unable to hotplug net0: bridge 'x' does not exist"
        raise CtkitError(err.message.removeprefix(f"{key}: "), hint=err.hint) from None
    if before is None:
        warnings = net_hotplug.add(new.vmid, index, net, pid)
    elif (
        _changed(before, net, "name")
        or _changed(before, net, "hwaddr")
        # a change killed half-way left the live interface unlike the config (gone, or half
        # made): made again as asked, instead of an update of what is not there
        or not net_hotplug.intact(new.vmid, index, before, pid)
    ):
        warnings = net_hotplug.replace(new.vmid, index, before, net, pid)
    else:
        warnings = net_hotplug.update(new.vmid, index, before, net, pid)
    for text in warnings:
        print(f"WARN: {text}", file=sys.stderr)
    _guest_network(new, pid)


def resync_network(conf: Config, key: str, pid: int) -> None:
    """Make ``netN`` live as the config has it, whatever a killed change left of it (half on
    its new bridge, renamed, half made): what the pending value may have made goes, and the
    config's interface is made again (a new one being added: gone)."""
    index = int(key[3:])
    wanted = conf.pending.values.get(key)
    # where the host side is found by the name inside (net10+ of a 9-digit CT), a name that
    # another interface has is that one's: the change to it never took (the kernel refuses a
    # second interface of a name), and removing by it took the other interface away
    nets = conf.nets()
    others = {str(net.get("name")) for k, net in nets.items() if k != key}
    with contextlib.suppress(CtkitError):  # never begun, or not valid at all
        net = NET_SCHEMA.parse(wanted) if wanted is not None else None
        if net is not None and str(net.get("name")) not in others:
            net_hotplug.remove(conf.vmid, index, net, pid)
    current = nets.get(key) if key in conf.values else None
    if current is None:  # it was being added: what was made of it goes
        net_hotplug.remove_unplugged(conf.vmid, index)
        return
    for text in net_hotplug.replace(conf.vmid, index, current, current, pid):
        print(f"WARN: {text}", file=sys.stderr)
    _guest_network(conf, pid)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> bool:
    return str(old.get(key) or "") != str(new.get(key) or "")


def _guest_network(conf: Config, pid: int) -> None:
    """Rewrite the guest's network files as the setup at start does (a warning if it fails)."""
    if conf.get("ostype") in (None, "unmanaged"):
        return
    from shared.guest.setup import GuestSetup  # big: only when needed

    monitor = nsenter.parent_pid(pid)
    rootdir = Path(f"/proc/{monitor}/root{paths.lxc_rootfs(conf.vmid)}")
    try:
        GuestSetup.for_rootfs(rootdir, guest_config(conf)).set_network()
    except CtkitError as err:
        print(f"WARN: guest network files not updated: {err}", file=sys.stderr)


def _mountpoint(old: Config, new: Config, key: str, pid: int) -> None:
    if key not in new.values:  # deleted: its volume is unusedN in ``new`` once unmounted
        # a line edited while it ran may no longer parse: no guess at what to unmount, the
        # deletion stays pending and is made at the next stop
        gone = old.mountpoint(key)
        shadow = _same_path(old, gone)
        if shadow is not None:
            # mounted one over the other: an unmount of that path takes whichever is on top,
            # which may be the mount point that stays (and this one would stay in use)
            print(f"WARN: {key} stays mounted until the CT stops: {shadow} is mounted at "
                  f"{gone.path} too", file=sys.stderr)  # fmt: skip
            raise Skip
        if not unplug_mount(old.vmid, gone, pid, unprivileged=old.unprivileged):
            print(f"WARN: {key} {LOCKED_MOUNT}", file=sys.stderr)
            raise Skip
        return
    mp = new.mountpoint(key)
    try:
        check_unsupported(new, lambda _line: None)  # quota=1 only where it works, as at start
    except CtkitError as err:
        raise CtkitError(err.message) from None
    here = _volume_mounted_at(new, mp, pid)
    if here == mp.volume:  # plugged by a hot-plug killed before its record: recorded now
        return
    plugged = {m.volume for m in old.mountpoints() if m.type == "volume"}
    if here is not None and here not in plugged:  # there, never recorded: it would be covered
        raise CtkitError(
            f"'{here}' is mounted at {mp.path} (a hot-plug killed before the config named it): "
            "it goes when the CT stops"
        )
    ct_map = config_idmap(new)
    if mp.options.get("idmap") and not ct_map:
        print(f"WARN: '{key}' - ignoring 'idmap' option unsupported by privileged container",
              file=sys.stderr)  # fmt: skip
    hotplug_mount(new.vmid, mp, pid, unprivileged=new.unprivileged, ct_map=ct_map)


def _volume_mounted_at(conf: Config, mp: MountPoint, pid: int) -> str | None:
    """The raw volume of ``conf`` (any section) mounted at ``mp``'s path in the container now,
    if any: a hot-plug killed between its mount and the save left it there while the config
    called it pending, and the same command again mounted a second volume over it."""
    point = Path("/" + "/".join(path_parts(mp.path)))
    devs = {entry.dev for entry in loop.mount_table(pid) if entry.point == point}
    if not devs:
        return None
    for volid in referenced_volumes(conf):
        try:
            if volume_format(volid) != "raw":
                continue  # a directory's device is its file system's: no proof of a mount
            numbers = mounted_devices(volid)
        except CtkitError:
            continue
        if {f"{os.major(n)}:{os.minor(n)}" for n in numbers} & devs:
            return volid
    return None


def _same_path(conf: Config, mp: MountPoint) -> str | None:
    """Another mount point of ``conf`` mounted at the path of ``mp``, if any."""
    where = path_parts(mp.path)
    for other in conf.mountpoints():
        if other.key != mp.key and path_parts(other.path) == where:
            return other.key
    return None


def _device(old: Config, new: Config, key: str, pid: int) -> None:
    dev = passthrough.device(new.devices()[key])
    passthrough.hotplug(new.vmid, dev, config_idmap(new), pid, detect_layout())
