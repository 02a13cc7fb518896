"""Host facts the guest setup copies into containers: DNS servers/search list and time zone."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from .context import HostInfo

MAX_NAMESERVERS = 3


def read_resolv_conf(path: Path) -> tuple[list[str], list[str]]:
    """``(nameservers, searchdomains)`` of a resolv.conf; the last search/domain line wins."""
    servers: list[str] = []
    search: list[str] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return servers, search
    for line in text.splitlines():
        if match := re.match(r"(search|domain)\s+(\S.*)$", line):
            search = match.group(2).split()
        elif match := re.match(r"\s*nameserver\s+(\S+)", line):
            try:
                ipaddress.ip_address(match.group(1).split("%", 1)[0])
            except ValueError:
                continue
            if len(servers) < MAX_NAMESERVERS:
                servers.append(match.group(1))
    return servers, search


def gather_host_info(
    host_dns: tuple[list[str], list[str]] | None,
    resolv_conf: Path,
    localtime: Path,
    timezone_file: Path,
) -> HostInfo:
    if host_dns is None:
        servers, search = read_resolv_conf(resolv_conf)
    else:
        servers, search = list(host_dns[0]), list(host_dns[1])
    zone_target = os.path.realpath(localtime) if os.path.lexists(localtime) else None
    try:
        zone = timezone_file.read_text(encoding="utf-8").split("\n", 1)[0].strip() or None
    except OSError:
        zone = None
    if zone is None and zone_target and "/zoneinfo/" in zone_target:
        zone = zone_target.split("/zoneinfo/", 1)[1]
    return HostInfo(servers, search, zone_target, zone)
