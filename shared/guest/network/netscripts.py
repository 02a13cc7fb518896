"""Red Hat network-scripts: ``ifcfg-<if>`` plus marked ``route-``/``route6-<if>`` files
(CentOS/Alma/Rocky < 10, Fedora ≤ 24/27, openEuler)."""

from __future__ import annotations

import re

from .common import Nic, gw4_needs_route, gw6_needs_route, ipv4_address_netmask

SCRIPTS_DIR = "/etc/sysconfig/network-scripts"


def render_ifcfg(
    nic: Nic, uuid: str, nameservers: list[str], searchdomains: list[str]
) -> tuple[str | None, str, str]:
    """``(ifcfg content or None to skip the NIC, route lines, route6 lines)``."""
    data: list[str] = []
    routes: list[str] = []
    routes6: list[str] = []
    bootproto = ""
    if nic.ip and nic.ip != "manual":
        if nic.ip == "dhcp":
            bootproto = "dhcp"
        else:
            bootproto = "none"
            address, netmask = ipv4_address_netmask(nic.ip)
            data += [f"IPADDR={address}", f"NETMASK={netmask}"]
            if nic.gw:
                data.append(f"GATEWAY={nic.gw}")
                if gw4_needs_route(nic):
                    routes += [f"{nic.gw} dev {nic.name}", f"default via {nic.gw} dev {nic.name}"]
    if nic.ip6 and nic.ip6 != "manual":
        bootproto = bootproto or "none"
        data.append("IPV6INIT=yes")
        if nic.ip6 == "auto":
            data.append("IPV6_AUTOCONF=yes")
        elif nic.ip6 == "dhcp":
            data.append("DHCPV6C=yes")
        else:
            data += [f"IPV6ADDR={nic.ip6}", "IPV6_AUTOCONF=no"]
            if nic.gw6 and gw6_needs_route(nic):
                routes6 += [f"{nic.gw6} dev {nic.name}", f"default via {nic.gw6} dev {nic.name}"]
            elif nic.gw6:
                data.append(f"IPV6_DEFAULTGW={nic.gw6}")
    data += [f"DNS{i}={ns}" for i, ns in enumerate(nameservers, 1)]
    if searchdomains:
        data.append(f"DOMAIN={' '.join(searchdomains)}")
    if not data and not bootproto:
        return None, "", ""
    header = [f"DEVICE={nic.name}", "ONBOOT=yes", f"UUID={uuid}", f"BOOTPROTO={bootproto}"]
    return (
        "\n".join(header + data) + "\n",
        "".join(f"{r}\n" for r in routes),
        "".join(f"{r}\n" for r in routes6),
    )


def update_sysconfig_network(text: str, has_ipv4: bool, has_ipv6: bool) -> str:
    """Switch ``NETWORKING``/``NETWORKING_IPV6`` on in ``/etc/sysconfig/network``."""
    for flag, key in ((has_ipv4, "NETWORKING"), (has_ipv6, "NETWORKING_IPV6")):
        if not flag:
            continue
        text, count = re.subn(rf"({key})=\S+", r"\1=yes", text, count=1)
        if not count:
            text += f"{key}=yes\n"
    return text
