"""Gentoo: netifrc's /etc/conf.d/net, agetty lines in inittab, /etc/conf.d/hostname."""

from __future__ import annotations

import re

from .base import Plugin, short_name
from .context import Ctx
from .network.common import named_nics
from .network.gentoo import CONF_NET, render_gentoo

GETTY_RE = re.compile(r"\s*c?\d+:\d*:[^:]*:.*getty")


class Gentoo(Plugin):
    ostype = "gentoo"
    lxc_tty_dir = False

    def template_fixup(self, ctx: Ctx) -> None:
        self.setup_securetty(ctx)

    def setup_init(self, ctx: Ctx) -> None:
        self.rewrite_inittab(ctx, GETTY_RE, "{tty}::respawn:/sbin/agetty 38400 tty{tty}")

    def setup_network(self, ctx: Ctx) -> None:
        # conf.d/net is sourced by a shell; rather than parse it, our block replaces the file
        data, up = render_gentoo(named_nics(ctx.cfg))
        ctx.files.modify(CONF_NET, data, mode="replace")
        for name in up:
            ctx.files.symlink("net.lo", f"/etc/init.d/net.{name}")

    def set_hostname(self, ctx: Ctx) -> None:
        hostname = self.hostname(ctx)
        self.update_etc_hosts(ctx, hostname)
        if ctx.files.exists("/etc/conf.d/hostname"):
            ctx.files.write("/etc/conf.d/hostname", f'hostname="{short_name(hostname)}"\n')
        else:  # systemd-based Gentoo reads /etc/hostname
            ctx.files.write("/etc/hostname", f"{short_name(hostname)}\n")
