"""Ubuntu: Debian's plugin with systemd-networkd from 17.10 and upstart gettys on 12.04/14.04."""

from __future__ import annotations

from .context import Ctx
from .debian import Debian
from .versions import major_minor

UPSTART_TTY = """\
# tty{n} - getty
#
# This service maintains a getty on tty{n} from the point the system is
# started until it is shut down again.

start on stopped rc RUNLEVEL=[2345] and (
            not-container or
            container CONTAINER=lxc or
            container CONTAINER=lxc-libvirt)

stop on runlevel [!2345]

respawn
exec /sbin/getty -8 38400 tty{n}
"""


class Ubuntu(Debian):
    ostype = "ubuntu"

    def _v(self) -> tuple[int, int]:
        parsed = major_minor(self.version)
        return (0, 0) if parsed is None else (parsed[0], parsed[1] or 0)

    def cidr_style(self) -> bool:
        return False

    def template_fixup(self, ctx: Ctx) -> None:
        files = ctx.files
        version = self._v()
        if (17, 10) <= version < (23, 4):
            for target, wants in (
                ("systemd-networkd.service", "multi-user.target.wants"),
                ("systemd-networkd.socket", "socket.target.wants"),
            ):
                files.mkdir(f"/etc/systemd/system/{wants}")
                files.symlink(
                    f"/lib/systemd/system/{target}", f"/etc/systemd/system/{wants}/{target}"
                )
        if version >= (17, 10):
            files.unlink("/etc/netplan/10-lxc.yaml")  # the template's netplan config
        if self.version in ("15.04", "15.10", "16.04"):
            self.setup_securetty(ctx, ["pts/0"])
        if self.version == "12.04":
            udev = files.read("/etc/udev/udev.conf")
            if udev is not None:
                files.write("/etc/udev/udev.conf", udev.replace('="err"', "=0", 1))

    def setup_init(self, ctx: Ctx) -> None:
        version = self._v()
        if version >= (23, 4):
            self.setup_systemd_preset(ctx, {"systemd-networkd.service": True})
        if version >= (16, 10):
            self.setup_container_getty_service(ctx)
        if self.version in ("12.04", "14.04"):
            for tty in range(1, 7):
                path = f"/etc/init/tty{tty}.conf"
                if tty <= ctx.tty_count:
                    ctx.files.write(path, UPSTART_TTY.format(n=tty))
                else:
                    ctx.files.unlink(path)

    def setup_network(self, ctx: Ctx) -> None:
        if self._v() >= (17, 10):
            self.setup_systemd_networkd(ctx)
        else:
            super().setup_network(ctx)
