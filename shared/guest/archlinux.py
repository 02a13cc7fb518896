"""Arch Linux: systemd-networkd, enabled at create time."""

from __future__ import annotations

from .base import Plugin
from .context import Ctx


class ArchLinux(Plugin):
    ostype = "archlinux"

    def template_fixup(self, ctx: Ctx) -> None:
        # Arch enables no networking by default; do what `systemctl enable systemd-networkd` does
        files = ctx.files
        for unit, wants in (
            ("systemd-networkd.service", "multi-user.target.wants"),
            ("systemd-networkd.socket", "socket.target.wants"),
        ):
            files.mkdir(f"/etc/systemd/system/{wants}")
            files.symlink(f"/usr/lib/systemd/system/{unit}", f"/etc/systemd/system/{wants}/{unit}")
        self.setup_securetty(ctx, ["console", "tty1", "tty2", "tty3", "tty4"])

    def setup_init(self, ctx: Ctx) -> None:
        self.setup_container_getty_service(ctx)
        self.setup_systemd_preset(ctx, {"systemd-networkd.service": True})

    def setup_network(self, ctx: Ctx) -> None:
        self.setup_systemd_networkd(ctx)
