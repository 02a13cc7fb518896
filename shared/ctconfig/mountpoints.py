"""Mount points (rootfs, mpN), unused volumes, device nodes and MAC addresses.

The functions take the raw ``key -> text`` mapping of one config section, so they work on the
main section, the pending section and snapshot sections alike.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Collection, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import ParamError
from shared.formats.types import FormatError
from shared.printable import printable

from .options import (
    INDEXED,
    MP_SCHEMA,
    ROOTFS_SCHEMA,
    VOLUME_ID_RE,
)

MpType = Literal["volume", "bind", "device"]

# STORAGE:SIZE_GiB allocates a new volume; a bare number means "on the default storage"
NEW_DISK_RE = re.compile(r"(?:([^/:\s]+):)?(\d+(?:\.\d+)?)", re.ASCII)
OWNER_RE = re.compile(r"(?:vm|base|subvol|basevol)-(\d+)-", re.ASCII)
PVE_MAC_PREFIX = "BC:24:11"


def classify(volume: str) -> MpType:
    """``/dev/...`` is a device, any other absolute path a bind mount, the rest a volume."""
    if volume.startswith("/"):
        return "device" if volume.startswith("/dev/") else "bind"
    return "volume"


def parse_new_volume(volume: str) -> tuple[str | None, float] | None:
    """``(storage, size_gib)`` for new-volume syntax (``local:8``, ``8``), else None."""
    m = NEW_DISK_RE.fullmatch(volume)
    if not m:
        return None
    return m.group(1), float(m.group(2))


def new_volume_size(size_gib: float) -> int:
    """Bytes of a new ``STORAGE:SIZE`` volume, rounded down to whole KiB like Proxmox."""
    if not math.isfinite(size_gib):  # 400 digits: no storage gets to say 'File too large'
        raise FormatError(f"invalid size '{size_gib:g}' - larger than any volume can be")
    return int(size_gib * 1024) * 1024 * 1024


def mountpoint_keys() -> list[str]:
    """``rootfs`` then ``mp0`` .. ``mp255``, the order mounts are set up in."""
    return ["rootfs"] + [f"mp{i}" for i in range(INDEXED["mp"])]


_UNUSED_KEYS = frozenset(f"unused{i}" for i in range(INDEXED["unused"]))


def check_volume_key(param: str, key: str, *, unused: bool = False) -> None:
    """Refuse a ``param`` that names no volume key: ``rootfs``, ``mp0`` .. ``mp255`` and, with
    ``unused``, ``unused0`` .. ``unused255`` (Proxmox's enumeration). A key is written into a
    config as it is given: ``move-volume --target-volume`` took any, a newline and a raw
    ``lxc.hook`` line after it included, which LXC then ran as the host's root."""
    if key in mountpoint_keys() or (unused and key in _UNUSED_KEYS):
        return
    raise ParamError({param: f"value '{printable(key)}' does not have a value in the enumeration"})


@dataclass(frozen=True)
class MountPoint:
    """One parsed rootfs/mpN entry. ``options`` holds every sub-option but volume and mp."""

    key: str
    volume: str
    path: str
    type: MpType
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        size = self.options.get("size")
        return int(size) if size is not None else None

    @property
    def ro(self) -> bool:
        return bool(self.options.get("ro"))

    def backup_enabled(self) -> tuple[bool, str]:
        """Whether vzdump includes it, and why: rootfs / not a volume / enabled / disabled."""
        if self.key == "rootfs":
            return True, "rootfs"
        if self.type != "volume":
            return False, "not a volume"
        if self.options.get("backup"):
            return True, "enabled"
        return False, "disabled"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"volume": self.volume, **self.options}
        if self.key != "rootfs":
            data["mp"] = self.path
        return data

    def replace(self, **changes: Any) -> MountPoint:
        """A copy with ``volume``/``path`` and/or sub-options changed (None removes one)."""
        volume = changes.pop("volume", self.volume)
        path = changes.pop("path", self.path)
        opts = {k: v for k, v in {**self.options, **changes}.items() if v is not None}
        return MountPoint(self.key, volume, path, classify(volume), opts)

    def render(self) -> str:
        schema = ROOTFS_SCHEMA if self.key == "rootfs" else MP_SCHEMA
        return schema.render(self.to_dict())


def parse_mountpoint(key: str, text: str) -> MountPoint:
    """Parse a rootfs/mpN value; raises FormatError / PropertyStringError."""
    if key == "rootfs":
        data = ROOTFS_SCHEMA.parse(text)
        path = "/"
    elif re.fullmatch(r"mp\d+", key):
        data = MP_SCHEMA.parse(text)
        path = str(data.pop("mp"))
    else:
        raise FormatError(f"parse_volume - unknown type: {key}")
    volume = str(data.pop("volume"))
    new = parse_new_volume(volume)
    if new is not None:
        new_volume_size(new[1])  # a size no volume can have is no value to keep
    return MountPoint(key, volume, path, classify(volume), data)


_MOUNT_ORDER = {key: i for i, key in enumerate(mountpoint_keys())}


def present_mountpoint_keys(values: Mapping[str, str]) -> list[str]:
    """The rootfs/mpN keys a section holds, in mount order."""
    # among the section's own keys: it holds a dozen, the order 257, and a backup asks for its
    # container's mount points some thirty times
    return sorted((k for k in values if k in _MOUNT_ORDER), key=_MOUNT_ORDER.__getitem__)


def iter_mountpoints(values: Mapping[str, str]) -> Iterator[MountPoint]:
    """rootfs then mp0..mp255 of one section; entries that do not parse are skipped."""
    for key in present_mountpoint_keys(values):
        text = values.get(key)
        if text is None:
            continue
        try:
            yield parse_mountpoint(key, text)
        except FormatError:
            continue


def unparsable_mountpoints(values: Mapping[str, str]) -> list[str]:
    """The rootfs/mpN keys of one section whose values do not parse, in mount order."""
    bad = []
    for key in present_mountpoint_keys(values):
        try:
            parse_mountpoint(key, values[key])
        except FormatError:
            bad.append(key)
    return bad


def named_volume(text: str) -> str | None:
    """The volume id a rootfs/mpN value names, read leniently from a value that does not parse
    as a whole (an option this version does not know): its ``volume=`` or first bare item."""
    parts = text.split(",")
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and key.strip() == "volume":
            return value.strip() if is_volume_id(value.strip()) else None
    bare = next((p.strip() for p in parts if "=" not in p), None)
    return bare if bare is not None and is_volume_id(bare) else None


def unparsable_volumes(values: Mapping[str, str], *, exclude: str | None = None) -> list[str]:
    """Volume ids named by rootfs/mpN values of one section that do not parse: such a mount
    point cannot be used, but its volume is in use all the same, never unreferenced (a rescan
    listed it as unused, and deleting that entry destroyed the data the line names)."""
    found = []
    for key in unparsable_mountpoints(values):
        volid = named_volume(values[key])
        if key != exclude and volid is not None and volid not in found:
            found.append(volid)
    return found


def check_device_node(path: str) -> tuple[int, int]:
    """``(mode, rdev)`` of an existing host device node (char or block)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FormatError(f"Device {path} does not exist") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise FormatError(f"{path} is not a device")
    return st.st_mode, st.st_rdev


def is_volume_id(volume: str) -> bool:
    return VOLUME_ID_RE.fullmatch(volume) is not None


def volume_owner(volid: str) -> int | None:
    """The owning CT of ``vm-<id>-disk-N``/``subvol-<id>-disk-N``/``base-<id>-...`` volumes."""
    m = VOLUME_ID_RE.fullmatch(volid)
    if not m:
        return None
    name = m.group(2).rstrip("/").rsplit("/", 1)[-1]
    owner = OWNER_RE.match(name)
    return int(owner.group(1)) if owner else None


def used_volumes(values: Mapping[str, str], *, exclude: str | None = None) -> list[str]:
    """Volume ids used by rootfs/mpN of one section (bind and device mounts excluded), also
    those named by values that do not parse."""
    used = []
    for key in present_mountpoint_keys(values):
        if key == exclude:
            continue
        try:
            mp = parse_mountpoint(key, values[key])
        except FormatError:
            volid = named_volume(values[key])
        else:
            volid = mp.volume if mp.type == "volume" and is_volume_id(mp.volume) else None
        if volid is not None:
            used.append(volid)
    return used


def unused_keys(values: Mapping[str, str]) -> list[str]:
    """The ``unusedN`` keys of a section in index order."""
    keys = [k for k in values if re.fullmatch(r"unused\d+", k)]
    return sorted(keys, key=lambda k: int(k[6:]))


def add_unused_volume(values: MutableMapping[str, str], volid: str) -> str | None:
    """Record ``volid`` as ``unusedN`` at the first free index; None if already recorded."""
    free: str | None = None
    for i in range(INDEXED["unused"]):
        key = f"unused{i}"
        if key in values:
            if values[key] == volid:
                return None
        elif free is None:
            free = key
    if free is None:
        raise FormatError("Too many unused volumes - please delete them first.")
    values[free] = volid
    return free


def drop_unused_volumes(values: MutableMapping[str, str], volids: Collection[str]) -> None:
    """Remove the ``unusedN`` entries that name one of ``volids``."""
    for key in unused_keys(values):
        if values[key] in volids:
            del values[key]


def random_mac(prefix: str | None = PVE_MAC_PREFIX) -> str:
    """A random unicast MAC in upper-case hex; ``prefix`` replaces its leading bytes.

    Without a prefix the address is locally administered (Proxmox's ``random_ether_addr``).
    """
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    addr = ":".join(f"{b:02X}" for b in raw)
    if prefix:
        addr = prefix.upper() + addr[len(prefix) :]
    return addr
