"""What a setup step sees while it runs chrooted: files, config, DNS and injectable randomness."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .config import GuestConfig
from .files import CtFiles
from .random48 import RandomSource


@dataclass
class HostInfo:
    """Facts about the host, gathered before the chroot (the child cannot see the host)."""

    nameservers: list[str] = field(default_factory=list)
    searchdomains: list[str] = field(default_factory=list)
    localtime: str | None = None  # resolved target of the host's /etc/localtime
    timezone: str | None = None  # content of the host's /etc/timezone


@dataclass
class Ctx:
    files: CtFiles
    cfg: GuestConfig
    host: HostInfo
    rng: RandomSource
    new_uuid: Callable[[], str]
    messages: list[tuple[str, str]] = field(default_factory=list)

    def info(self, text: str) -> None:
        self.messages.append(("info", text))

    def warn(self, text: str) -> None:
        self.messages.append(("warn", text))

    def dns(self) -> tuple[list[str], list[str]]:
        """``(searchdomains, nameservers)``: configured values, else the host's."""
        cfg = self.cfg
        search = cfg.searchdomain if cfg.searchdomain is not None else self.host.searchdomains
        servers = cfg.nameserver if cfg.nameserver is not None else self.host.nameservers[:3]
        return list(search), list(servers)

    @property
    def tty_count(self) -> int:
        return self.cfg.tty
