"""openSUSE Leap/Tumbleweed/Slowroll and SLES: sysconfig ifcfg/ifroute files (plus networkd
files where systemd-networkd is installed)."""

from __future__ import annotations

import re

from .base import Plugin
from .context import Ctx
from .network.common import named_nics
from .network.suse import SUSE_DIR, render_suse


class OpenSUSE(Plugin):
    ostype = "opensuse"

    def container_getty(self) -> bool:
        """openSUSE 13.0/13.1 predate container-getty@.service."""
        match = re.fullmatch(r"13\.(\d+)", self.version or "")
        return match is None or int(match.group(1)) >= 2

    def template_fixup(self, ctx: Ctx) -> None:
        files = ctx.files
        self.setup_securetty(ctx)
        # systemd-firstboot would otherwise ask for locale and zone on an invisible console
        if not files.exists("/etc/locale.conf"):
            files.write("/etc/locale.conf", "LANG=C.utf8")
        if not files.lexists("/etc/localtime"):
            files.symlink("/usr/share/zoneinfo/UTC", "/etc/localtime")

    def setup_init(self, ctx: Ctx) -> None:
        if self.container_getty():
            self.setup_container_getty_service(ctx)
        self.fixup_old_getty(ctx)

    def setup_network(self, ctx: Ctx) -> None:
        files = ctx.files
        files.make_path(SUSE_DIR)
        for nic in named_nics(ctx.cfg):
            ifcfg, routes = render_suse(nic)
            if ifcfg is None:
                continue
            files.write(f"{SUSE_DIR}/ifcfg-{nic.name}", ifcfg)
            files.modify(f"{SUSE_DIR}/ifroute-{nic.name}", routes, mode="prepend", delete=True)
        if files.exists("/usr/lib/systemd/systemd-networkd"):
            self.setup_systemd_networkd(ctx)
