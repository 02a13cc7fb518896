"""NixOS: the system is built from its configuration; only network, hostname and DNS are set."""

from __future__ import annotations

from .base import Plugin
from .context import Ctx


class NixOS(Plugin):
    ostype = "nixos"

    def setup_network(self, ctx: Ctx) -> None:
        self.setup_systemd_networkd(ctx)

    def set_timezone(self, ctx: Ctx) -> None:
        """NixOS manages /etc/localtime itself."""
