"""``/etc/network/interfaces`` (ifupdown: Debian, Devuan, Ubuntu < 17.10, Alpine).

The existing file is rewritten in place: stanzas of managed NICs are regenerated where they
stand, everything else (comments, unmanaged interfaces, ``source`` lines, extra options of
managed stanzas) is kept. Missing stanzas are appended, a loopback stanza is prepended if the
file has no ``auto lo``. Running the writer twice gives the same file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .common import (
    Nic,
    gw4_needs_route,
    gw6_needs_route,
    ipv4_address_netmask,
    ipv6_address_prefix,
)

MARKER_RE = re.compile(r"# --- (?:BEGIN|END) PVE ---")
IFACE_RE = re.compile(r"\s*iface\s+(\S+)\s+(inet6?)\s+(\S+)\s*$")
AUTO_RE = re.compile(r"\s*auto\s*(.*)$")
DELIMITER_RE = re.compile(r"\s*(?:mapping\s|allow-|source\s|source-directory\s)")
OPTION_RE = re.compile(r"\s*((\S+)\s(.*))$")
DROPPED_OPTIONS = frozenset({"address", "netmask", "gateway", "broadcast"})
LOOPBACK = "auto lo\niface lo inet loopback\niface lo inet6 loopback\n\n"
LEGACY_ROUTE_RES = (
    re.compile(r"\s*post-up\s+ip\s+route\s+add\s+(\S+)\s+dev\s+(\S+)$"),
    re.compile(r"\s*post-up\s+ip\s+route\s+add\s+default\s+via\s+(\S+)\s+dev\s+(\S+)$"),
    re.compile(r"\s*pre-down\s+ip\s+route\s+del\s+default\s+via\s+(\S+)\s+dev\s+(\S+)$"),
    re.compile(r"\s*pre-down\s+ip\s+route\s+del\s+(\S+)\s+dev\s+(\S+)$"),
)


@dataclass
class Family:
    """One address family of a managed NIC: ``method`` is dhcp/manual/auto/static."""

    method: str
    address: str = ""  # static: as written in the file (CIDR or bare address)
    netmask: str = ""
    gateway: str | None = None
    needs_route: bool = False


@dataclass
class Managed:
    v4: Family | None = None
    v6: Family | None = None


@dataclass
class Stanza:
    ifname: str
    family: str  # "inet" or "inet6"
    attrs: list[str] = field(default_factory=list)


def managed_nics(nics: list[Nic], *, cidr_style: bool) -> dict[str, Managed]:
    """The NICs this writer owns: named ones with an ip or ip6 setting."""
    result: dict[str, Managed] = {}
    for nic in nics:
        entry = Managed()
        if nic.ip:
            entry.v4 = _family4(nic, cidr_style)
        if nic.ip6:
            entry.v6 = _family6(nic, cidr_style)
        if entry.v4 is not None or entry.v6 is not None:
            result[nic.name] = entry
    return result


def _family4(nic: Nic, cidr_style: bool) -> Family:
    ip = str(nic.ip)
    if ip in ("dhcp", "manual"):
        return Family(ip)
    address, netmask = ipv4_address_netmask(ip)
    fam = Family("static", ip if cidr_style else address, "" if cidr_style else netmask)
    fam.gateway = nic.gw
    fam.needs_route = gw4_needs_route(nic)
    return fam


def _family6(nic: Nic, cidr_style: bool) -> Family:
    ip6 = str(nic.ip6)
    if ip6 in ("auto", "dhcp", "manual"):
        return Family(ip6)
    address, prefix = ipv6_address_prefix(ip6)
    fam = Family("static", ip6 if cidr_style else address, "" if cidr_style else prefix)
    fam.gateway = nic.gw6
    fam.needs_route = gw6_needs_route(nic)
    return fam


def gateway_block(ifname: str, gw: str) -> str:
    return (
        "# --- BEGIN PVE ---\n"
        f"\tpost-up ip route add {gw} dev {ifname}\n"
        f"\tpost-up ip route add default via {gw} dev {ifname}\n"
        f"\tpre-down ip route del default via {gw} dev {ifname}\n"
        f"\tpre-down ip route del {gw} dev {ifname}\n"
        "# --- END PVE ---\n"
    )


def remove_gateway_scripts(attrs: list[str]) -> list[str]:
    """Drop our old route helpers: a marked block, or else the exact legacy 4-line blocks."""
    if any(a in ("# --- BEGIN PVE ---", "# --- END PVE ---") for a in attrs):
        kept, keep = [], True
        for attr in attrs:
            if attr == "# --- BEGIN PVE ---":
                keep = False
            elif attr == "# --- END PVE ---":
                keep = True
            elif keep:
                kept.append(attr)
        return kept
    out = list(attrs)
    i = 0
    while i < len(out) - 3:
        if _legacy_block_at(out, i):
            del out[i : i + 4]
            continue
        i += 1
    return out


def _legacy_block_at(attrs: list[str], i: int) -> bool:
    matches = [regex.match(attrs[i + k]) for k, regex in enumerate(LEGACY_ROUTE_RES)]
    if not all(matches):
        return False
    first = matches[0].groups()  # type: ignore[union-attr]
    return all(m.groups() == first for m in matches[1:])  # type: ignore[union-attr]


class _Writer:
    def __init__(self, networks: dict[str, Managed]) -> None:
        self.networks = networks
        self.out: list[str] = []
        self.section: Stanza | None = None
        self.done_auto: set[str] = set()
        self.done: set[tuple[str, str]] = set()

    def emit(self, text: str) -> None:
        self.out.append(text)

    def flush(self) -> None:
        """Print the open stanza of a managed NIC, regenerated from the config."""
        section, self.section = self.section, None
        if section is None:
            return
        name = section.ifname
        if name not in self.done_auto:
            self.emit(f"auto {name}\n")
            self.done_auto.add(name)
        self.done.add((name, section.family))
        managed = self.networks[name]
        fam = managed.v4 if section.family == "inet" else managed.v6
        if fam is None:
            return  # address removed from the config: the stanza disappears
        if fam.method != "static":
            self.emit(f"iface {name} {section.family} {fam.method}\n\n")
            return
        self.emit(f"iface {name} {section.family} static\n\taddress {fam.address}\n")
        if fam.netmask:
            self.emit(f"\tnetmask {fam.netmask}\n")
        attrs = remove_gateway_scripts(section.attrs)
        if fam.gateway:
            route = gateway_block(name, fam.gateway)
            self.emit(route if fam.needs_route else f"\tgateway {fam.gateway}\n")
        for attr in attrs:
            self.emit(f"\t{attr}\n")
        self.emit("\n")

    def feed(self, line: str) -> None:
        if MARKER_RE.match(line):
            if self.section is not None:  # lets remove_gateway_scripts() find our block
                self.section.attrs.append(line)
            return
        if line.startswith("#"):
            self.emit(f"{line}\n")
            return
        if not line.strip():
            if self.section is not None:
                self.flush()
            else:
                self.emit(f"{line}\n")
            return
        if match := IFACE_RE.match(line):
            self.flush()
            if match.group(1) in self.networks:
                self.section = Stanza(match.group(1), match.group(2))
            else:
                self.emit(f"{line}\n")
            return
        if match := AUTO_RE.match(line):
            self.done_auto.update(match.group(1).split())
            self.flush()
            self.emit(f"{line}\n")
            return
        if DELIMITER_RE.match(line):
            self.flush()
            self.emit(f"{line}\n")
            return
        if self.section is not None and (match := OPTION_RE.match(line)):
            if match.group(2) not in DROPPED_OPTIONS:
                self.section.attrs.append(match.group(1))
            return
        self.emit(f"{line}\n")


def render_interfaces(old: str | None, nics: list[Nic], *, cidr_style: bool) -> str | None:
    """New content of ``/etc/network/interfaces``; ``None`` when no NIC is managed here."""
    networks = managed_nics(nics, cidr_style=cidr_style)
    if not networks:
        return None
    writer = _Writer(networks)
    if old is not None:
        lines = old.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            writer.feed(line)
        writer.flush()
    text = "".join(writer.out)
    separator = bool(text) and not text.endswith("\n\n")
    for name in sorted(networks):
        for family, fam in (("inet", networks[name].v4), ("inet6", networks[name].v6)):
            if fam is None or (name, family) in writer.done:
                continue
            if separator:
                writer.emit("\n")
                separator = False
            writer.section = Stanza(name, family)
            writer.flush()
    text = "".join(writer.out)
    if "lo" not in writer.done_auto:
        text = LOOPBACK + text
    return text
