"""systemd-networkd ``/etc/systemd/network/<if>.network`` files (Ubuntu ≥ 17.10, Arch, NixOS,
Fedora ≥ 25, openSUSE with networkd)."""

from __future__ import annotations

from .common import Nic, gw4_needs_route, gw6_needs_route

NETWORK_DIR = "/etc/systemd/network"
DHCP_MODES = ("no", "ipv4", "ipv6", "yes")


def networkd_path(nic: Nic) -> str:
    return f"{NETWORK_DIR}/{nic.name}.network"


def render_networkd(nic: Nic) -> str:
    lines = [
        "[Match]",
        f"Name = {nic.name}",
        "",
        "[Network]",
        f"Description = Interface {nic.name} autoconfigured by PVE",
    ]
    routes: list[str] = []
    dhcp = 0
    accept_ra = False
    if nic.ip == "dhcp":
        dhcp |= 1
    elif nic.static4:
        lines.append(f"Address = {nic.ip}")
    if nic.gw:
        lines.append(f"Gateway = {nic.gw}")
        if gw4_needs_route(nic):
            routes += ["", "[Route]", f"Destination = {nic.gw}/32", "Scope = link"]
    if nic.ip6 == "dhcp":
        dhcp |= 2
        accept_ra = True
    elif nic.ip6 == "auto":
        accept_ra = True
    elif nic.static6:
        lines.append(f"Address = {nic.ip6}")
    if nic.gw6:
        accept_ra = False  # a static v6 gateway must not be overridden by router adverts
        lines.append(f"Gateway = {nic.gw6}")
        if gw6_needs_route(nic):
            routes += ["", "[Route]", f"Destination = {nic.gw6}/128", "Scope = link"]
    lines.append(f"DHCP = {DHCP_MODES[dhcp]}")
    lines.append(f"IPv6AcceptRA = {'true' if accept_ra else 'false'}")
    return "\n".join(lines + routes) + "\n"
