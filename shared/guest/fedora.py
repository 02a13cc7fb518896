"""Fedora: CentOS's plugin with systemd-networkd from 25 (network-scripts up to 24/27)."""

from __future__ import annotations

from .centos import SYSCONFIG_NETWORK, CentOS
from .context import Ctx


class Fedora(CentOS):
    ostype = "fedora"

    def uses_networkmanager(self) -> bool:
        return False

    def template_fixup(self, ctx: Ctx) -> None:
        self.setup_securetty(ctx)
        ctx.files.unlink("/etc/systemd/system/getty@.service")

    def setup_init(self, ctx: Ctx) -> None:
        self.setup_container_getty_service(ctx)
        if self.number() >= 37:  # the distro preset disables systemd-networkd from 37 on
            self.setup_systemd_preset(ctx, {"systemd-networkd.service": True})

    def setup_network(self, ctx: Ctx) -> None:
        # /etc/sysconfig/network exists in templates that still use the legacy network service
        version = self.number()
        legacy = ctx.files.exists(SYSCONFIG_NETWORK)
        if version <= 24 or (version <= 27 and legacy):
            self.write_network_scripts(ctx)
        if version >= 25:
            self.setup_systemd_networkd(ctx)
