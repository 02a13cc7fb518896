"""Gentoo netifrc: the PVE block of ``/etc/conf.d/net`` (``config_<if>``/``routes_<if>``)."""

from __future__ import annotations

from .common import Nic, gw4_needs_route, gw6_needs_route

CONF_NET = "/etc/conf.d/net"


def render_gentoo(nics: list[Nic]) -> tuple[str, list[str]]:
    """``(block data, interfaces that need an /etc/init.d/net.<if> link)``."""
    data = ['modules="$modules ifconfig"']
    up: list[str] = []
    for nic in sorted(nics, key=lambda n: n.name):
        config: list[str] = []
        routes: list[str] = []
        if nic.ip == "dhcp":
            config.append("dhcp")
        elif nic.static4:
            config.append(str(nic.ip))
        if nic.gw:
            if gw4_needs_route(nic):
                routes.append(f"-host {nic.gw} dev {nic.name}")
            routes.append(f"default gw {nic.gw}")
        # ip6=dhcp is ignored: the templates' busybox udhcpc has no DHCPv6 support
        if nic.static6:
            config.append(str(nic.ip6))
        if nic.gw6:
            if gw6_needs_route(nic):
                routes.append(f"-6 -host {nic.gw6} dev {nic.name}")
            routes.append(f"-6 default gw {nic.gw6}")
        if config:
            data.append(f'config_{nic.name}="' + "\n".join(config) + '"')
        if routes:
            data.append(f'routes_{nic.name}="' + "\n".join(routes) + '"')
        if config or routes:
            up.append(nic.name)
    return "\n".join(data) + "\n", up
