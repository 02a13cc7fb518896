"""Views of a container config that need no LXC: its id map, the host ids of its root, the
guest setup's data. Kept apart from :mod:`shared.runtime.ctview` so that create, restore and
the storage commands do not load the LXC config generator for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..guest.config import GuestConfig

from ..archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry, parse_idmap, to_host
from ..ctconfig.config import Config, Section
from ..errors import ConfigError
from ..formats.types import FormatError


def idmap(conf: Section, unprivileged: bool) -> list[IdMapEntry]:
    """The container's id map: raw ``lxc.idmap`` lines, else the default for unprivileged."""
    entries = [parse_idmap(v) for k, v in conf.lxc if k == "lxc.idmap"]
    if entries or not unprivileged:
        return entries
    return list(DEFAULT_UNPRIVILEGED)


def config_idmap(conf: Config) -> list[IdMapEntry]:
    return idmap(conf, conf.unprivileged)


def root_ids(entries: list[IdMapEntry]) -> tuple[int, int]:
    """Host uid/gid of container root: 0/0 when unmapped (privileged or custom map)."""
    uid = to_host(entries, "u", 0)
    gid = to_host(entries, "g", 0)
    return (uid or 0, gid or 0)


def config_root_ids(conf: Config) -> tuple[int, int]:
    return root_ids(config_idmap(conf))


def guest_config(conf: Config) -> GuestConfig:
    from ..guest.config import GuestConfig  # the guest package is big: load it when needed

    uid, gid = config_root_ids(conf)
    try:
        return GuestConfig.from_pct_conf(conf.vmid, conf.values, root_uid=uid, root_gid=gid)
    except FormatError as err:  # a hand-edited value (tty, unprivileged) the setup must read
        raise ConfigError(f"vm {conf.vmid} - {err}") from None
