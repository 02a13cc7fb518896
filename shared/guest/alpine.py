"""Alpine: OpenRC runlevel links, busybox inittab gettys, ifupdown-style interfaces."""

from __future__ import annotations

import re

from .base import Plugin
from .context import Ctx
from .debian import INTERFACES
from .network.common import named_nics
from .network.interfaces import render_interfaces
from .versions import at_least

RUNLEVEL_LINKS = (
    ("/etc/init.d/networking", "/etc/runlevels/boot/networking"),
    ("/etc/init.d/bootmisc", "/etc/runlevels/boot/bootmisc"),
    ("/etc/init.d/hostname", "/etc/runlevels/boot/hostname"),
    ("/etc/init.d/killprocs", "/etc/runlevels/shutdown/killprocs"),
    ("/etc/init.d/savecache", "/etc/runlevels/shutdown/savecache"),
)
GETTY_RE = re.compile(r"\s*tty\d+:\d*:[^:]*:.*getty")


class Alpine(Plugin):
    ostype = "alpine"
    lxc_tty_dir = False

    def template_fixup(self, ctx: Ctx) -> None:
        for target, link in RUNLEVEL_LINKS:
            ctx.files.symlink(target, link)
        self.setup_securetty(ctx)
        self.remove_lxc_name_from_etc_hosts(ctx)

    def setup_init(self, ctx: Ctx) -> None:
        self.rewrite_inittab(ctx, GETTY_RE, "tty{tty}::respawn:/sbin/getty 38400 tty{tty}")

    def setup_network(self, ctx: Ctx) -> None:
        # busybox has neither a working DHCPv6 client nor an 'auto' method: show them as manual
        nics = [
            nic.with_ip6("manual") if nic.ip6 in ("dhcp", "auto") else nic
            for nic in named_nics(ctx.cfg)
        ]
        old = ctx.files.read(INTERFACES)
        text = render_interfaces(old, nics, cidr_style=at_least(self.version, 3, 13))
        if text is not None:
            ctx.files.write(INTERFACES, text)
