"""Debian: ifupdown interfaces, sysvinit inittab or systemd gettys, snakeoil key regeneration."""

from __future__ import annotations

import re

from .base import Plugin
from .context import Ctx
from .files import perl_lines
from .network.common import Nic, named_nics
from .network.interfaces import render_interfaces
from .versions import at_least

INTERFACES = "/etc/network/interfaces"
SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
SNAKEOIL_UNIT_NAME = "proxmox-regenerate-snakeoil.service"
SNAKEOIL_UNIT = """\
[Unit]
Description="Regenerate pre-generated snakeoil certificate and key-pair once"
ConditionPathExists=/etc/ssl/certs/ssl-cert-snakeoil.pem
ConditionFirstBoot=yes
Wants=first-boot-complete.target
Before=first-boot-complete.target

[Service]
Type=oneshot
ExecStart=make-ssl-cert -f generate-default-snakeoil
"""
INITTAB_DROP_RE = re.compile(r"\s*\d+:\d*:[^:]*:.*getty|\s*p[fno0]:")


class Debian(Plugin):
    ostype = "debian"
    lxc_tty_dir = False  # Debian's gettys cannot use /dev/lxc/

    def cidr_style(self) -> bool:
        return at_least(self.version, 10)

    def setup_init(self, ctx: Ctx) -> None:
        if self.init_is_systemd(ctx):
            self.setup_container_getty_service(ctx)
            if at_least(self.version, 12):
                # systemd-networkd is enabled by default there, but Debian uses ifupdown
                self.setup_systemd_preset(ctx, {"systemd-networkd.service": False})
        self.setup_inittab(ctx)

    def setup_inittab(self, ctx: Ctx) -> None:
        old = ctx.files.read("/etc/inittab")
        if old is None:
            return
        lines = [ln for ln in perl_lines(old) if not INITTAB_DROP_RE.match(ln)]
        lines.append("p0::powerfail:/sbin/init 0")
        option = "-L" if not at_least(self.version, 7) else "--noclear"
        for tty in range(1, ctx.tty_count + 1):
            if tty == 7:
                continue  # reserved for X11
            levels = "2345" if tty == 1 else "23"
            lines.append(f"{tty}:{levels}:respawn:/sbin/getty {option} 38400 tty{tty}")
        ctx.files.write("/etc/inittab", "\n".join(lines) + "\n")

    def snakeoil_fixup(self, ctx: Ctx) -> None:
        """Templates with ``ssl-cert`` ship one key pair for everybody: regenerate it."""
        files = ctx.files
        if not files.exists(SNAKEOIL_KEY):
            return
        if self.init_is_systemd(ctx):
            unit = f"/etc/systemd/system/{SNAKEOIL_UNIT_NAME}"
            ctx.info(f"Setting up '{SNAKEOIL_UNIT_NAME}' to regenerate snakeoil certificate..")
            files.write(unit, SNAKEOIL_UNIT)
            wants = "/etc/systemd/system/first-boot-complete.target.wants"
            files.make_path(wants)
            files.symlink(unit, f"{wants}/{SNAKEOIL_UNIT_NAME}")
        else:
            ctx.warn("Template contains pre-generated snakeoil certificate!")
            ctx.warn("Run `make-ssl-cert generate-default-snakeoil -f` to regenerate it!")
        # never leave the shared key usable, even if regeneration fails later
        files.unlink(SNAKEOIL_KEY)

    def setup_network(self, ctx: Ctx) -> None:
        self.write_interfaces(ctx, named_nics(ctx.cfg))

    def write_interfaces(self, ctx: Ctx, nics: list[Nic]) -> None:
        text = render_interfaces(ctx.files.read(INTERFACES), nics, cidr_style=self.cidr_style())
        if text is not None:
            ctx.files.write(INTERFACES, text)
