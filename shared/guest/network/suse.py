"""openSUSE/SLES ``/etc/sysconfig/network/ifcfg-<if>`` and marked ``ifroute-<if>`` files."""

from __future__ import annotations

from .common import Nic, gw4_needs_route, gw6_needs_route

SUSE_DIR = "/etc/sysconfig/network"
BOOTPROTOS = ("static", "dhcp4", "dhcp6", "dhcp")


def render_suse(nic: Nic) -> tuple[str | None, str]:
    """``(ifcfg content or None to leave it alone, ifroute block lines)``."""
    routes: list[str] = []
    addresses: list[str] = []
    dhcp = 0
    configured = False
    if nic.ip and nic.ip != "manual":
        configured = True
        if nic.ip == "dhcp":
            dhcp |= 1
        else:
            addresses.append(nic.ip)
            if nic.gw:
                if gw4_needs_route(nic):
                    routes.append(f"{nic.gw} 0.0.0.0 255.255.255.255 {nic.name}")
                routes.append(f"default {nic.gw} 0.0.0.0 {nic.name}")
    if nic.ip6 and nic.ip6 != "manual":
        configured = True
        if nic.ip6 == "dhcp":
            dhcp |= 2
        elif nic.ip6 != "auto":  # SLAAC needs no ifcfg setting
            addresses.append(nic.ip6)
            if nic.gw6:
                if gw6_needs_route(nic):
                    routes.append(f"{nic.gw6}/128 - - {nic.name}")
                routes.append(f"default {nic.gw6} - {nic.name}")
    route_text = "".join(f"{r}\n" for r in routes)
    if not addresses and configured and dhcp == 0:
        return None, route_text  # e.g. ip6=auto alone: nothing to write
    lines = [f"STARTMODE={'onboot' if configured else 'manual'}", f"BOOTPROTO={BOOTPROTOS[dhcp]}"]
    if len(addresses) > 1:
        lines += [f"IPADDR_{i}={addr}" for i, addr in enumerate(addresses, 1)]
    elif addresses:
        lines.append(f"IPADDR={addresses[0]}")
    return "\n".join(lines) + "\n", route_text
