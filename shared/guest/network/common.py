"""What every network writer needs: the named NICs of the config and address arithmetic."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from shared.errors import ConfigError

from ..config import GuestConfig

IPV6_CIDR_RE = re.compile(r"([0-9A-Fa-f:.]+)/(\d+)")


@dataclass(frozen=True)
class Nic:
    """One ``netN`` with a ``name``: the keys the guest files are written from."""

    name: str
    ip: str | None = None
    gw: str | None = None
    ip6: str | None = None
    gw6: str | None = None

    @property
    def static4(self) -> bool:
        return bool(self.ip) and self.ip not in ("dhcp", "manual")

    @property
    def static6(self) -> bool:
        return bool(self.ip6) and self.ip6 not in ("auto", "dhcp", "manual")

    def with_ip6(self, ip6: str | None) -> Nic:
        return replace(self, ip6=ip6)


def named_nics(cfg: GuestConfig) -> list[Nic]:
    """NICs with a ``name``, in ``netN`` order (only those get guest configuration)."""
    nics: list[Nic] = []
    for _index, net in sorted(cfg.nets.items()):
        name = net.get("name")
        if not name:
            continue
        nics.append(
            Nic(
                name=name,
                ip=net.get("ip") or None,
                gw=net.get("gw") or None,
                ip6=net.get("ip6") or None,
                gw6=net.get("gw6") or None,
            )
        )
    return nics


def ip_in_cidr(ip: str, cidr: str) -> bool:
    """Whether ``ip`` lies inside the network of ``cidr``; unparsable input counts as outside."""
    try:
        network = ipaddress.ip_interface(cidr).network
        return ipaddress.ip_address(ip.split("%", 1)[0]) in network
    except ValueError:
        return False


def gw4_needs_route(nic: Nic) -> bool:
    """A v4 gateway outside the static subnet needs an explicit host route."""
    return bool(nic.gw) and nic.static4 and not ip_in_cidr(str(nic.gw), str(nic.ip))


def gw6_needs_route(nic: Nic) -> bool:
    """Likewise for v6, except that a link-local gateway is always reachable."""
    if not nic.gw6 or not nic.static6:
        return False
    return not ip_in_cidr(nic.gw6, str(nic.ip6)) and not ip_in_cidr(nic.gw6, "fe80::/10")


def ipv4_address_netmask(cidr: str) -> tuple[str, str]:
    """``1.2.3.4/24`` into ``("1.2.3.4", "255.255.255.0")``."""
    try:
        if "/" not in cidr:
            raise ValueError
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError:
        raise ConfigError(f"unable to parse ipv4 address/mask '{cidr}'") from None
    return str(cidr.split("/", 1)[0]), str(iface.netmask)


def ipv6_address_prefix(cidr: str) -> tuple[str, str]:
    """``fc00::1/64`` into ``("fc00::1", "64")`` as written (no normalisation)."""
    match = IPV6_CIDR_RE.fullmatch(cidr)
    if not match:
        raise ConfigError("unable to parse ipv6 address/prefix")
    try:
        ipaddress.IPv6Interface(cidr)
    except ValueError:
        raise ConfigError("unable to parse ipv6 address/prefix") from None
    return match.group(1), match.group(2)


def primary_ips(cfg: GuestConfig) -> tuple[str | None, str | None]:
    """net0's static addresses without prefix (what /etc/hosts names the container by)."""
    net = cfg.nets.get(0)
    if net is None:
        return None, None
    ip4 = net.get("ip")
    ip6 = net.get("ip6")
    v4 = None if not ip4 or ip4 in ("dhcp", "manual") else re.sub(r"/\d+$", "", ip4)
    v6 = None if not ip6 or ip6 in ("auto", "dhcp", "manual") else re.sub(r"/\d+$", "", ip6)
    return v4, v6
