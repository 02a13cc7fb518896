"""What a migration moves and where to: storage and bridge maps, the volume list, pre-checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import parse_mountpoint
from shared.ctconfig.options import NET_SCHEMA
from shared.ctconfig.pending import referenced_volumes
from shared.errors import (
    AlreadyExistsError,
    NotFoundError,
    ParamError,
    StateError,
    StorageError,
)
from shared.storage.api import volume_owner
from shared.storage.config import StorageConfig
from shared.storage.foreign import foreign_dirs
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import volume_format, volume_size

from .target_info import TargetInfo, TargetStorage

ID_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]|[a-zA-Z]")


@dataclass(frozen=True)
class IdMap:
    """Proxmox's ``source:target,...`` map; one bare id maps everything; ``1`` is identity."""

    pairs: Mapping[str, str]
    default: str | None = None

    def __call__(self, source: str) -> str:
        return self.pairs.get(source) or self.default or source


def parse_map(text: str | None, param: str, what: str) -> IdMap:
    if not text or text == "1":
        return IdMap({})
    pairs: dict[str, str] = {}
    default = None
    for item in text.split(","):
        src, sep, dst = item.partition(":")
        if not sep:
            if default is not None or not ID_RE.fullmatch(src):
                raise ParamError({param: f"failed to parse {what} map: invalid entry '{item}'"})
            default = src
            continue
        if not ID_RE.fullmatch(src) or not ID_RE.fullmatch(dst) or src in pairs:
            raise ParamError({param: f"failed to parse {what} map: invalid entry '{item}'"})
        pairs[src] = dst
    return IdMap(pairs, default)


@dataclass(frozen=True)
class Volume:
    volid: str
    keys: tuple[str, ...]  # rootfs/mpN/unusedN that name it
    storage: str
    target_storage: str
    fmt: str
    size: int


def volumes(conf: Config, smap: IdMap, cfg: StorageConfig, log: Any) -> list[Volume]:
    """Every volume of the container, with where it goes; refuses what cannot move."""
    if conf.snapshots:
        raise StateError("remote migration with snapshots not supported yet")
    if any(k == "rootfs" or k.startswith(("mp", "unused")) for k in conf.pending.values):
        raise StateError("the container has pending volume changes - apply them first")
    for mp in conf.mountpoints(strict=True):
        if mp.type != "volume":
            raise StateError(f"cannot migrate local {mp.type} mount point '{mp.key}'")
    out = []
    for volid in referenced_volumes(conf):
        sid, _name = parse_volume_id(volid)
        keys = tuple(
            k for k, v in {**conf.values}.items()
            if (k == "rootfs" or k.startswith(("mp", "unused"))) and _volume_of(k, v) == volid
        )  # fmt: skip
        if not keys:
            raise StateError(f"volume '{volid}' is only referenced by pending changes")
        owner = volume_owner(volid)
        if owner != conf.vmid:  # freed on the source once migrated: never another guest's
            raise StateError(f"can't migrate volume '{volid}' - owned by other guest ({owner})")
        store = cfg.storage(sid)
        if store.shared:
            raise StorageError(f"volume '{volid}' is on shared storage '{sid}' - not supported")
        fmt = volume_format(volid, cfg)
        if fmt == "subvol":
            _check_one_file_system(volid, store.path_of(parse_volume_id(volid)[1]))
        out.append(Volume(volid, keys, sid, smap(sid), fmt, volume_size(volid, cfg)))
        log(f"found local volume '{volid}' (in current VM config)")
    return out


def _check_one_file_system(volid: str, path: Path) -> None:
    """rsync --one-file-system and btrfs send leave out a file system or subvolume nested in
    the volume; the source is deleted after the migration, so that would lose its content."""
    nested = foreign_dirs(path).foreign
    if nested is not None:
        raise StorageError(
            f"volume '{volid}' holds another file system or btrfs subvolume at "
            f"'{nested.relative_to(path)}' - it would not be migrated; move its content out first"
        )


def _volume_of(key: str, value: str) -> str | None:
    if key.startswith("unused"):
        return value
    try:
        return parse_mountpoint(key, value).volume
    except ValueError:
        return None


def bridges(conf: Config, bmap: IdMap) -> dict[str, str]:
    """``netN -> target bridge`` for every interface that has a bridge."""
    return {key: bmap(str(net["bridge"])) for key, net in conf.nets().items() if net.get("bridge")}


def check_target(info: TargetInfo, vols: list[Volume], nets: dict[str, str]) -> None:
    """Refuse before anything is touched: version, storages, room, bridges, VMID."""
    info.check_compatible()
    need: dict[str, int] = {}
    for vol in vols:
        need[vol.target_storage] = need.get(vol.target_storage, 0) + vol.size
    for sid, size in need.items():
        st = info.storages.get(sid) or TargetStorage(exists=False)
        if not st.exists:
            raise NotFoundError(f"storage '{sid}' does not exist on the target")
        if "rootdir" not in st.content:
            raise StorageError(f"content type 'rootdir' is not available on storage '{sid}'")
        if not st.active:
            raise StorageError(f"storage '{sid}' is not available on the target: {st.error}")
        if st.avail < size:
            raise StorageError(
                f"not enough space on storage '{sid}' of the target: need {size >> 20} MiB, "
                f"{st.avail >> 20} MiB available"
            )
    for key, bridge in nets.items():
        if not info.bridges.get(bridge):
            raise NotFoundError(f"bridge '{bridge}' ({key}) does not exist on the target")
    if not info.vmid_free:
        raise AlreadyExistsError(f"target VMID is already in use on node '{info.node}'")


def target_config(
    conf: Config, target_vmid: int, volmap: Mapping[str, str], nets: Mapping[str, str]
) -> Config:
    """The config the target gets: volumes renamed, bridges mapped, no lock, no pending volumes."""
    new = conf.copy()
    new.vmid = target_vmid
    new.delete("lock")
    for key, value in list(new.values.items()):
        if key.startswith("unused"):
            new.values[key] = volmap[value]
        elif key == "rootfs" or re.fullmatch(r"mp\d+", key):
            mp = parse_mountpoint(key, value)
            new.values[key] = mp.replace(volume=volmap[mp.volume]).render()
        elif key in nets:
            data = dict(NET_SCHEMA.parse(value))
            data["bridge"] = nets[key]
            new.values[key] = NET_SCHEMA.render(data)
    return new
