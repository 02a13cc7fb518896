"""Options that work only in some cases, or not at all in ctkit: named, never silently dropped.

``firewall=1`` on a network device needs pve-firewall, which ctkit does not have: a new value is
refused (``pct create``/``pct set``), a config that already carries it (restored or copied from
a Proxmox host) starts with a warning. ``quota=1`` works as on Proxmox only for ext4 image
volumes of privileged containers; elsewhere the start is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .config import Section

QUOTA_MESSAGE = "quota=1 needs an ext4 image volume (raw)"
FIREWALL_MESSAGE = "firewall=1 is not supported by ctkit: it has no firewall, nothing would filter"


def value_problem(key: str, value: Mapping[str, Any]) -> str | None:
    """Why a parsed ``netN`` value asks for something ctkit cannot do."""
    if key.startswith("net") and value.get("firewall"):
        return FIREWALL_MESSAGE
    return None


def quota_keys(conf: Section) -> list[str]:
    """The mount points of ``conf`` with ``quota=1``."""
    return [mp.key for mp in conf.mountpoints() if mp.options.get("quota")]


def quota_without_image(conf: Section) -> list[tuple[str, str]]:
    """``(key, volume)`` of ``quota=1`` mount points that are not ext4 images (subvolumes,
    directories, bind mounts)."""
    return [
        (mp.key, mp.volume)
        for mp in conf.mountpoints()
        if mp.options.get("quota") and not (mp.type == "volume" and mp.volume.endswith(".raw"))
    ]


def firewall_keys(conf: Section) -> Iterator[str]:
    """The network devices of ``conf`` with ``firewall=1``."""
    return (key for key, net in conf.nets().items() if net.get("firewall"))
