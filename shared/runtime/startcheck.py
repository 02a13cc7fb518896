"""What ``pct start`` checks before it generates the LXC config and asks LXC to start.

A config file may have been edited by hand or restored from anywhere; its values are only
checked leniently when it is read. Everything that goes into the generated LXC config is checked
strictly here, so a bad value is one clear line about this container instead of an LXC error.
The host side of the network (bridges, VLAN filtering) is checked too, because LXC reports a
missing bridge or a tag on a bridge without VLAN filtering only as raw netlink errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import paths
from ..ctconfig.config import Config, unparsable
from ..ctconfig.options import option_spec, parse_option
from ..ctconfig.unsupported import (
    FIREWALL_MESSAGE,
    QUOTA_MESSAGE,
    firewall_keys,
    quota_keys,
    quota_without_image,
)
from ..errors import ConfigError, StateError
from ..formats.types import FormatError
from ..storage.config import load_config
from .guestview import config_root_ids
from .passthrough import device
from .traverse import check_traversable

Log = Callable[[str], None]
SYS_NET = Path("/sys/class/net")

# the keys the LXC config is generated from (and how LXC is started)
GENERATED_FROM = (
    "debug",
    "arch",
    "ostype",
    "hostname",
    "tty",
    "console",
    "memory",
    "swap",
    "cpulimit",
    "cpuunits",
    "cores",
    "features",
    "entrypoint",
)


def check_values(conf: Config) -> None:
    """Strict schema checks of the values the LXC config is made of."""
    keys = [k for k in GENERATED_FROM if k in conf.values]
    keys += [k for k in sorted(conf.values) if k.startswith(("net", "dev", "mp")) or k == "rootfs"]
    for key in keys:
        if option_spec(key) is None:
            continue
        try:
            parse_option(key, conf.values[key])
        except FormatError as err:
            raise unparsable(conf.vmid, key, err) from None


def check_unsupported(conf: Config, log: Log) -> None:
    """Quotas only where they work (the guest would silently get none); firewall=1 is warned
    about."""
    if quota_keys(conf) and conf.unprivileged:
        raise StateError("Quotas are not supported by unprivileged containers.")
    for key, volume in quota_without_image(conf):
        raise ConfigError(
            f"vm {conf.vmid} - {key}: {QUOTA_MESSAGE}, '{volume}' is not one",
            hint=f"remove quota=1 from {key}, or use a volume with a size on a storage with "
            "raw images",
        )
    for key in firewall_keys(conf):
        log(f"WARN: {key}: {FIREWALL_MESSAGE}")


def check_bridges(conf: Config, sys_net: Path = SYS_NET) -> None:
    """Each bridge exists and is a Linux bridge (another interface was refused by the kernel
    only when plugged: 'netlink: Operation not supported'); a VLAN tag needs a bridge with
    VLAN filtering."""
    for key, net in conf.nets().items():
        check_bridge(key, net, sys_net)


def check_bridge(key: str, net: Mapping[str, Any], sys_net: Path = SYS_NET) -> None:
    """:func:`check_bridges` for the one interface ``key``."""
    bridge = net.get("bridge")
    if not bridge:
        return
    bridge = str(bridge)
    if bridge in (".", "..") or not (sys_net / bridge).exists():
        raise ConfigError(f"{key}: bridge '{bridge}' does not exist")
    if not (sys_net / bridge / "bridge").is_dir():
        raise ConfigError(f"{key}: '{bridge}' is not a Linux bridge")
    tag = net.get("tag")
    if not tag:
        return
    try:
        filtering = (sys_net / bridge / "bridge/vlan_filtering").read_text().strip()
    except OSError:
        filtering = "unsupported"  # a kernel built without bridge VLAN filtering
    if filtering != "1":
        raise ConfigError(
            f"{key}: VLAN tag {tag} needs a VLAN-aware bridge, "
            f"but bridge '{bridge}' has no VLAN filtering"
            + (" (this kernel does not support it)" if filtering == "unsupported" else ""),
            hint=f"enable it: ip link set {bridge} type bridge vlan_filtering 1 "
            "(bridge-vlan-aware yes in /etc/network/interfaces)",
        )


def check_storages(conf: Config) -> None:
    """Every volume's storage is configured and of a type ctkit can mount."""
    cfg = load_config()
    for mp in conf.mountpoints():
        if mp.type == "volume":
            cfg.storage(mp.volume.partition(":")[0])


def check_start_config(conf: Config, log: Log) -> None:
    check_values(conf)
    check_unsupported(conf, log)
    check_storages(conf)
    check_bridges(conf)
    for dev in conf.devices().values():  # Proxmox's refusals, before LXC runs the hook
        device(dev)
    check_traversable(paths.lxc_rootfs(conf.vmid), *config_root_ids(conf))
