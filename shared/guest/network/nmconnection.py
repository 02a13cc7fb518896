"""NetworkManager keyfiles ``/etc/NetworkManager/system-connections/<if>.nmconnection``
(CentOS/Alma/Rocky ≥ 10)."""

from __future__ import annotations

import ipaddress

from .common import Nic, gw4_needs_route, gw6_needs_route

NM_DIR = "/etc/NetworkManager/system-connections"
NM_MODE = 0o600  # NetworkManager ignores keyfiles readable by others


def nm_path(nic: Nic) -> str:
    return f"{NM_DIR}/{nic.name}.nmconnection"


def _family_of(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).version
    except ValueError:
        return None


def _dns_lines(version: int, nameservers: list[str], searchdomains: list[str]) -> list[str]:
    servers = [ns for ns in nameservers if _family_of(ns) == version]
    if not servers:
        return []
    lines = [f"dns={';'.join(servers)}"]
    if searchdomains:
        lines.append(f"dns-search={';'.join(searchdomains)}")
    return lines


def render_nmconnection(
    nic: Nic, uuid: str, nameservers: list[str], searchdomains: list[str]
) -> str:
    lines = [
        "[connection]",
        f"id={nic.name}",
        f"uuid={uuid}",
        "type=ethernet",
        f"interface-name={nic.name}",
        "[ipv4]",
    ]
    if nic.ip == "dhcp":
        lines.append("method=auto")
    elif nic.static4:
        lines += ["method=manual", f"addresses={nic.ip}"]
        if nic.gw:
            lines.append(f"gateway={nic.gw}")
            if gw4_needs_route(nic):
                lines.append(f"routes={nic.gw}")
    else:
        lines.append("method=disabled")
    if nic.ip == "dhcp" or nic.static4:
        lines += _dns_lines(4, nameservers, searchdomains)
    lines.append("[ipv6]")
    if nic.ip6 in ("auto", "dhcp"):
        lines.append("method=auto")
    elif nic.static6:
        lines += ["method=manual", f"address={nic.ip6}"]
        if nic.gw6 and gw6_needs_route(nic):
            lines.append(f"routes={nic.gw6}")
        elif nic.gw6:
            lines.append(f"gateway={nic.gw6}")
    else:
        lines.append("method=disabled")
    if nic.ip6 in ("auto", "dhcp") or nic.static6:
        lines += _dns_lines(6, nameservers, searchdomains)
    return "\n".join(lines) + "\n"
