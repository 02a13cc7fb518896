"""Options Proxmox honours and ctkit cannot: named, never silently dropped.

``quota=1`` on a volume needs Proxmox's quota set-up inside the guest and ``firewall=1`` on a
network device needs pve-firewall; ctkit has neither. A new value asking for them is refused
(``pct create``/``pct set``); a config that already carries them (restored or copied from a
Proxmox host) starts with a warning for the firewall and is refused for quotas, because the
guest would see no quota where it expects one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .config import Section

QUOTA_MESSAGE = "quota=1 is not supported by ctkit (no user/group quotas on container volumes)"
FIREWALL_MESSAGE = "firewall=1 is not supported by ctkit: it has no firewall, nothing would filter"


def value_problem(key: str, value: Mapping[str, Any]) -> str | None:
    """Why a parsed ``rootfs``/``mpN``/``netN`` value asks for something ctkit cannot do."""
    if (key == "rootfs" or key.startswith("mp")) and value.get("quota"):
        return QUOTA_MESSAGE
    if key.startswith("net") and value.get("firewall"):
        return FIREWALL_MESSAGE
    return None


def quota_keys(conf: Section) -> list[str]:
    """The mount points of ``conf`` with ``quota=1``."""
    return [mp.key for mp in conf.mountpoints() if mp.options.get("quota")]


def firewall_keys(conf: Section) -> Iterator[str]:
    """The network devices of ``conf`` with ``firewall=1``."""
    return (key for key, net in conf.nets().items() if net.get("firewall"))
