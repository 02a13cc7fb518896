"""``pct set`` at the data level (pct.md §2.5): changes go to ``[pve:pending]`` and are applied.

:func:`update_pending` validates the command line and writes every change into the pending
section; :func:`apply_pending` moves pending changes into the main section (all of them for a
stopped CT, the hot-plugged keys the caller names for a running one), doing the mount-point and
unused-volume bookkeeping. Storage stays outside: the caller passes ``alloc``/``free``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import CtkitError, NotFoundError, ParamError, StorageError, VerifyError
from shared.formats.types import FormatError

from . import store
from .config import Config
from .mountpoints import (
    PVE_MAC_PREFIX,
    add_unused_volume,
    check_device_node,
    classify,
    is_volume_id,
    named_volume,
    new_volume_size,
    parse_mountpoint,
    parse_new_volume,
    present_mountpoint_keys,
    random_mac,
    unparsable_volumes,
    used_volumes,
    volume_owner,
)
from .options import (
    NET_SCHEMA,
    format_option,
    is_settable,
    option_exists,
    param_errors,
    parse_option,
    split_list,
)

# applied to the config of a running CT at once, without any live action
HOTPLUG_FAST = frozenset(
    {"description", "onboot", "startup", "protection", "hostname", "hookscript", "cores"}
    | {"tags", "lock"}
)
# applied to a running CT after a live action of the caller (cgroup limits); plus netN always,
# mpN/devN when the key is new, and the deletion of an mpN
HOTPLUG_LIVE = frozenset({"cpulimit", "cpuunits", "memory", "swap"})
# deletions that take effect on a running CT (fast keys and unusedN need no live action)
HOTPLUG_LIVE_DELETE = frozenset({"swap", "cpulimit", "cpuunits"})
REQUIRED = ("memory", "rootfs", "ostype")
READ_ONLY = ("unprivileged",)
MP_KEY_RE = re.compile(r"mp\d+")
NET_KEY_RE = re.compile(r"net\d+")
DEV_KEY_RE = re.compile(r"dev\d+")
UNUSED_KEY_RE = re.compile(r"unused\d+")
DIGEST_MISMATCH = "detected modified configuration - file changed by other user? Try again."

HotplugAction = Literal["fast", "live", "deferred"]
Alloc = Callable[[str | None, float, str, Config], str]
Free = Callable[[str], None]
Check = Callable[[str, Any], None]


class OptionError(ParamError):
    """A refused option change, printed as one plain line (Proxmox ``die``, not a 400 list)."""

    def __init__(self, message: str) -> None:
        super().__init__(message=message)

    def lines(self) -> list[str]:
        return [self.message]


@dataclass
class HotplugPlan:
    """How a running CT takes each changed key: config only, after a live action, or later."""

    fast: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    deferred: set[str] = field(default_factory=set)


@dataclass
class UpdateResult:
    modified: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    plan: HotplugPlan | None = None  # only for a running CT


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    allocated: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # unusedN keys added

    def fail(self, key: str, err: Exception) -> None:
        message = f"unable to apply pending change {key} : {err}"
        self.errors[key] = message
        self.warnings.append(message)


# --- hot-plug classification --------------------------------------------------------------


def hotplug_action(conf: Config, key: str, *, delete: bool = False) -> HotplugAction:
    """How a running CT takes a pending set (or delete) of ``key``."""
    if key in HOTPLUG_FAST or (delete and UNUSED_KEY_RE.fullmatch(key)):
        return "fast"
    if NET_KEY_RE.fullmatch(key):
        return "live"
    if delete:
        if MP_KEY_RE.fullmatch(key) and key in conf.values:
            return "live"  # unmounted unless busy (Proxmox waits for the next start)
        return "live" if key in HOTPLUG_LIVE_DELETE else "deferred"
    if key in HOTPLUG_LIVE:
        return "live"
    if MP_KEY_RE.fullmatch(key) or DEV_KEY_RE.fullmatch(key):
        return "deferred" if key in conf.values else "live"
    return "deferred"


def plan_hotplug(conf: Config, keys: Iterable[str] | None = None) -> HotplugPlan:
    """Classify the pending keys (values and deletes), restricted to ``keys`` if given."""
    plan = HotplugPlan()
    wanted = set(keys) if keys is not None else None
    deletes = conf.pending_deletes()
    items = [(k, False) for k in conf.pending.values if k != "delete"]
    items += [(k, True) for k in deletes]
    for key, delete in items:
        if wanted is not None and key not in wanted:
            continue
        getattr(plan, hotplug_action(conf, key, delete=delete)).add(key)
    return plan


# --- update -------------------------------------------------------------------------------


def _key_list(keys: str | Iterable[str]) -> list[str]:
    return split_list(keys) if isinstance(keys, str) else list(keys)


def parse_values(set_values: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Strict schema check of every value: ``key -> (parsed, canonical text)``."""
    errors: dict[str, str] = {}
    parsed: dict[str, tuple[Any, str]] = {}
    for key, value in set_values.items():
        if not is_settable(key):
            errors[key] = (
                "property is not defined in schema and the schema does not allow additional "
                "properties"
            )
            continue
        try:
            raw = value if isinstance(value, str) else format_option(key, value)
            data = parse_option(key, raw)
            parsed[key] = (data, format_option(key, data))
        except FormatError as err:
            errors.update(param_errors(key, err))
    if errors:
        raise ParamError(errors)
    return parsed


def _check_params(values: Mapping[str, Any], delete: list[str], revert: list[str]) -> None:
    for key in revert:
        if not option_exists(key):
            raise ParamError({"revert": f"unknown option '{key}'"})
        if key in values:
            raise ParamError(
                {"revert": f"you can't use '-{key}' and '-revert {key}' at the same time"}
            )
    for key in delete:
        if key in values:
            raise ParamError(
                {"delete": f"you can't use '-{key}' and -delete {key}' at the same time"}
            )
        if not option_exists(key):
            raise ParamError({"delete": f"unknown option '{key}'"})
        if key in revert:
            raise ParamError(
                {"delete": f"you can't use '-delete {key}' and '-revert {key}' at the same time"}
            )


def _check_root_only(
    conf: Config, values: Mapping[str, tuple[Any, str]], delete: list[str]
) -> None:
    """What only root@pam may change (Proxmox's ``check_ct_modify_config_perm``)."""

    def deny(what: str) -> None:
        raise OptionError(f"Permission check failed ({what})")

    for key in [*values, *delete]:
        if DEV_KEY_RE.fullmatch(key):
            deny("configuring device passthrough is only allowed for root@pam")
    for key, (data, _text) in values.items():
        if key == "rootfs" or MP_KEY_RE.fullmatch(key):
            mp_type = classify(str(data.get("volume", "")))
            if mp_type != "volume":
                deny(f"mount point type {mp_type} is only allowed for root@pam")
        if key == "features":
            _check_features_change(conf, data, deny)


def _check_features_change(conf: Config, new: dict[str, Any], deny: Callable[[str], None]) -> None:
    if not conf.unprivileged:
        deny("changing feature flags for privileged container is only allowed for root@pam")
    old = conf.features()
    changed = {k for k in set(old) | set(new) if bool(old.get(k)) != bool(new.get(k))}
    if changed - {"nesting"}:
        deny("changing feature flags (except nesting) is only allowed for root@pam")


def update_pending(
    conf: Config,
    set_values: Mapping[str, Any],
    delete_keys: str | Iterable[str] = (),
    revert_keys: str | Iterable[str] = (),
    *,
    running: bool,
    is_root: bool = True,
    digest: str | None = None,
    force: bool = False,
    check_lock: bool = True,
    check: Check | None = None,
) -> UpdateResult:
    """Validate a ``pct set`` and write it into ``conf.pending`` (nothing is applied yet).

    ``check(key, parsed_value)`` is the caller's extra validation (storage content types,
    bridge MTU, hook script volumes...). On any error ``conf`` is left unchanged.
    """
    delete = _key_list(delete_keys)
    revert = _key_list(revert_keys)
    if not set_values and not delete and not revert:
        raise OptionError("no options specified")
    values = parse_values(set_values)
    _check_params(values, delete, revert)
    if not is_root:
        _check_root_only(conf, values, delete)
    if check_lock:
        store.check_lock(conf)
    if digest is not None and digest != conf.digest:
        raise VerifyError(DIGEST_MISMATCH)
    work = conf.copy()
    result = UpdateResult()
    for key in revert:
        _replace_pending_value(work, key, None)
        work.remove_pending_delete(key)
    _stage_deletes(work, delete, force, result)
    _stage_values(work, values, check, result)
    work.cleanup_pending()
    conf.values, conf.pending = work.values, work.pending
    if running:
        result.plan = plan_hotplug(conf, result.modified)
    return result


def _stage_deletes(conf: Config, delete: list[str], force: bool, result: UpdateResult) -> None:
    for key in delete:
        if key not in conf.values and key not in conf.pending.values:
            result.warnings.append(f"cannot delete '{key}' - not set in current configuration!")
            continue
        result.modified.add(key)
        if key in REQUIRED:
            raise OptionError(f"unable to delete required option '{key}'")
        if key in READ_ONLY:
            raise OptionError(f"unable to delete read-only option: '{key}'")
        if MP_KEY_RE.fullmatch(key) or UNUSED_KEY_RE.fullmatch(key):
            store.check_protection(conf, f"can't remove CT {conf.vmid} drive '{key}'")
        _replace_pending_value(conf, key, None)  # a pending value of the key goes too
        conf.add_pending_delete(key, force)


def _replace_pending_value(conf: Config, key: str, new: str | None) -> None:
    """Set (None: drop) the pending value of ``key``. A pending mount point may name a volume
    that was allocated already (a ``pct set`` killed before it applied the change): a volume
    that nothing names any more stays in the config as ``unusedN``, never named by nothing."""
    text = conf.pending.values.get(key)
    if new is None:
        conf.pending.delete(key)
    else:
        conf.pending.values[key] = new
    if text is None or not MP_KEY_RE.fullmatch(key):
        return
    try:
        mp = parse_mountpoint(key, text)
    except FormatError:
        return
    if mp.type != "volume" or parse_new_volume(mp.volume) is not None:
        return
    if volume_owner(mp.volume) == conf.vmid and not volume_referenced(conf, mp.volume):
        try:
            add_unused_volume(conf.values, mp.volume)
        except FormatError as err:
            raise StorageError(str(err)) from None


def _stage_values(
    conf: Config, values: Mapping[str, tuple[Any, str]], check: Check | None, result: UpdateResult
) -> None:
    for key in sorted(values):
        data, text = values[key]
        result.modified.add(key)
        if key in READ_ONLY:
            raise OptionError(f"unable to modify read-only option: '{key}'")
        if key == "rootfs" or MP_KEY_RE.fullmatch(key):
            store.check_protection(conf, f"can't update CT {conf.vmid} drive '{key}'")
            _check_mp_volume(key, text)
            _check_used_once(conf, key, text)
        elif DEV_KEY_RE.fullmatch(key):
            _check_device(key, data)
        if check is not None:
            check(key, data)
        _replace_pending_value(conf, key, text)
        conf.remove_pending_delete(key)


def _check_mp_volume(key: str, text: str) -> None:
    try:
        mp = parse_mountpoint(key, text)
    except FormatError as err:  # a new volume's size that no volume can have
        raise OptionError(str(err)) from None
    new = parse_new_volume(mp.volume)
    if mp.type == "volume" and (new is None or new[0] is None) and not is_volume_id(mp.volume):
        raise OptionError(f"unable to parse volume ID '{mp.volume}'")


def _check_used_once(conf: Config, key: str, text: str) -> None:
    """A volume another mount point of the container uses (now or pending, and not being
    deleted) is refused: the second mount of a raw volume failed on its ext4's multi-mount
    protection, at hot-plug and then at every start, with only mount's exit code 32 to say
    why; a directory volume would be the same files at two places."""
    volid = parse_mountpoint(key, text).volume
    if parse_new_volume(volid) is not None:
        return
    deleting = conf.pending_deletes()
    for other in keys_naming(conf, volid, skip=key, unused=False):
        if other not in deleting:
            raise OptionError(f"volume '{volid}' is already used by '{other}'")


def keys_naming(conf: Config, volid: str, *, skip: str, unused: bool = True) -> list[str]:
    """The keys of the main and the pending section but ``skip`` that name ``volid``: mount
    points, and with ``unused`` the ``unusedN`` entries (snapshots: :func:`volume_referenced`)."""
    keys: list[str] = []
    for values in (conf.values, conf.pending.values):
        named = [
            k for k in present_mountpoint_keys(values) if volid in used_volumes({k: values[k]})
        ]
        if unused:
            named += [k for k, v in values.items() if UNUSED_KEY_RE.fullmatch(k) and v == volid]
        keys += [k for k in named if k != skip and k not in keys]
    return keys


def _check_device(key: str, data: dict[str, Any]) -> None:
    path = data.get("path")
    if not path:
        raise OptionError(f"Path is not defined for passthrough device {key}")
    try:
        check_device_node(str(path))
    except FormatError as err:
        raise OptionError(str(err)) from None


# --- apply --------------------------------------------------------------------------------


def referenced_volumes(conf: Config) -> list[str]:
    """Volume ids of rootfs, mpN and unusedN, in the main and the pending section."""
    vols: list[str] = []
    for section in (conf, conf.pending):
        for mp in section.mountpoints():
            if mp.type == "volume" and mp.volume not in vols:
                vols.append(mp.volume)
        for volid in unparsable_volumes(section.values):
            if volid not in vols:
                vols.append(volid)
        for volid in section.unused().values():
            if volid not in vols:
                vols.append(volid)
    return vols


def volume_referenced(conf: Config, volid: str, *, skip_key: str | None = None) -> bool:
    """Whether a mount point of the main/pending section (but ``skip_key``) or of any
    snapshot uses ``volid``."""
    for values in (conf.values, conf.pending.values):
        if volid in used_volumes(values, exclude=skip_key):
            return True
    return any(volid in used_volumes(snap.values) for snap in conf.snapshots.values())


def apply_pending(
    conf: Config,
    *,
    keys: Iterable[str] | None = None,
    alloc: Alloc,
    free: Free,
    volume_size: Callable[[str], int | None] | None = None,
    mac_prefix: str | None = PVE_MAC_PREFIX,
) -> ApplyResult:
    """Move pending changes into the main section (``keys``: only those; None: all).

    Deletes first (``mpN`` of a volume becomes ``unusedN`` unless still referenced; ``unusedN``
    frees an owned volume through ``free``), then values (``STORAGE:SIZE`` mount points are
    allocated through ``alloc(storage, size_gib, key, conf) -> volid``; a replaced volume
    becomes ``unusedN``; ``netN`` gets a MAC and ``type=veth``). A failing key stays pending
    and is reported in ``errors``.
    """
    wanted = set(keys) if keys is not None else None
    result = ApplyResult()
    for key in sorted(conf.pending_deletes()):
        if wanted is not None and key not in wanted:
            continue
        try:
            _apply_delete(conf, key, free, result)
        except (CtkitError, FormatError) as err:
            result.fail(key, err)
            continue
        conf.delete(key)
        conf.remove_pending_delete(key)
        result.applied.append(key)
    conf.cleanup_pending()
    for key in sorted(k for k in conf.pending.values if k != "delete"):
        if wanted is not None and key not in wanted:
            continue
        try:
            text = _apply_value(conf, key, alloc, volume_size, mac_prefix, result)
        except (CtkitError, FormatError) as err:
            result.fail(key, err)
            continue
        conf.values[key] = text
        conf.pending.delete(key)
        result.applied.append(key)
    return result


def _apply_delete(conf: Config, key: str, free: Free, result: ApplyResult) -> None:
    text = conf.values.get(key)
    if text is None:
        return
    if MP_KEY_RE.fullmatch(key):
        try:
            mp = parse_mountpoint(key, text)
            volid = mp.volume if mp.type == "volume" else None
        except FormatError:
            # a line this version cannot read (hand-edited, or from a newer Proxmox) can still
            # be removed: the volume it names is kept as unused, as a readable one's would be
            volid = named_volume(text)
        if volid is not None and not volume_referenced(conf, volid, skip_key=key):
            _add_unused(conf, volid, result)
    elif UNUSED_KEY_RE.fullmatch(key):
        if classify(text) != "volume" or volume_referenced(conf, text):
            return
        if volume_owner(text) != conf.vmid:
            result.warnings.append(f"ignore deletion of '{text}', CT {conf.vmid} isn't the owner!")
            return
        try:
            free(text)
        except NotFoundError as err:
            # gone already (removed by hand, or a move killed half-way): nothing to free, and
            # the entry goes, as on Proxmox; it stayed pending for good, failing every apply
            result.warnings.append(str(err))
            return
        result.freed.append(text)


def _add_unused(conf: Config, volid: str, result: ApplyResult) -> None:
    try:
        key = add_unused_volume(conf.values, volid)
    except FormatError as err:
        raise StorageError(str(err)) from None
    if key is not None:
        result.unused.append(key)


def _apply_value(
    conf: Config,
    key: str,
    alloc: Alloc,
    volume_size: Callable[[str], int | None] | None,
    mac_prefix: str | None,
    result: ApplyResult,
) -> str:
    text = conf.pending.values[key]
    if key == "rootfs" or MP_KEY_RE.fullmatch(key):
        return _apply_mountpoint(conf, key, alloc, volume_size, result)
    if NET_KEY_RE.fullmatch(key):
        net = NET_SCHEMA.parse(text)
        net["type"] = "veth"
        if not net.get("hwaddr"):
            net["hwaddr"] = random_mac(mac_prefix)
        return NET_SCHEMA.render(net)
    return text


def _apply_mountpoint(
    conf: Config,
    key: str,
    alloc: Alloc,
    volume_size: Callable[[str], int | None] | None,
    result: ApplyResult,
) -> str:
    mp = parse_mountpoint(key, conf.pending.values[key])
    new = parse_new_volume(mp.volume) if mp.type == "volume" else None
    if new is not None:
        storage, size_gib = new
        volid = alloc(storage, size_gib, key, conf)
        result.allocated.append(volid)
        mp = mp.replace(volume=volid, size=new_volume_size(size_gib))
    elif mp.type == "volume" and volume_size is not None:
        try:
            size = volume_size(mp.volume)
        except Exception as err:  # a size rescan is best effort, as in Proxmox
            result.warnings.append(f"Could not rescan volume size - {err}")
        else:
            if size is not None:
                mp = mp.replace(size=size)
    text = mp.render()
    conf.pending.values[key] = text  # keeps a freshly allocated volume recorded on failure
    old_text = conf.values.get(key)
    if old_text is not None:
        try:
            old = parse_mountpoint(key, old_text)
        except FormatError:
            return text
        replaced = old.type == "volume" and old.volume != mp.volume
        if replaced and not volume_referenced(conf, old.volume, skip_key=key):
            _add_unused(conf, old.volume, result)
    return text
