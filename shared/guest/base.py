"""Setup steps common to all distributions; each distro plugin overrides what differs.

Every method runs chrooted in the container (see ``setup.py``) and gets a :class:`Ctx`.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Mapping

from shared.errors import ConfigError

from .context import Ctx
from .files import perl_lines, remove_pve_sections
from .network.common import named_nics, primary_ips
from .network.networkd import NETWORK_DIR, networkd_path, render_networkd

PRESET_FILE = "/etc/systemd/system-preset/00-pve.preset"
PRESET_HEADER = "# Added by PVE at create-time for first-boot configuration."
PRESET_DEFAULTS: Mapping[str, bool] = {
    "sys-kernel-config.mount": False,
    "sys-kernel-debug.mount": False,
    "getty@.service": False,
    "container-getty@.service": True,
}
CRON_ROOT_RE = re.compile(r"\d+(\s+\S+\s+\S+\s+\S+\s+\S+\s+root\s+\S.*)$")
CRON_D_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
LO4 = "127.0.0.1 localhost.localnet localhost\n"
LO6 = "::1 localhost.localnet localhost\n"


def short_name(hostname: str) -> str:
    return hostname.split(".", 1)[0]


class Plugin:
    """Base plugin: ``ostype``/``version`` as detected, ``os_release`` of the container."""

    ostype = "base"
    # Whether /dev/lxc/ ttys work at all; Debian, Alpine and Gentoo say no.
    lxc_tty_dir = True

    def __init__(self, version: str | None, os_release: Mapping[str, str] | None = None) -> None:
        self.version = version
        self.os_release = dict(os_release or {})

    # --- the hooks ---------------------------------------------------------------------------

    def post_create(self, ctx: Ctx, shadow_hash: str, ssh_keys: str | None) -> None:
        self.clear_machine_id(ctx)
        self.snakeoil_fixup(ctx)
        self.template_fixup(ctx)
        self.randomize_crontab(ctx)
        self.set_user_password(ctx, shadow_hash)
        if ssh_keys:
            self.set_authorized_keys(ctx, ssh_keys)
        self.setup_init(ctx)
        self.setup_network(ctx)
        self.set_hostname(ctx)
        self.set_dns(ctx)
        self.set_timezone(ctx)

    def pre_start(self, ctx: Ctx) -> None:
        ctx.files.write("/fastboot", "")  # skips fsck, among other things
        self.setup_init(ctx)
        self.setup_network(ctx)
        self.set_hostname(ctx)
        self.set_dns(ctx)
        self.set_timezone(ctx)

    def template_fixup(self, ctx: Ctx) -> None:
        """Repairs of the template itself, also run on restore."""

    def snakeoil_fixup(self, ctx: Ctx) -> None:
        """Debian family only."""

    def setup_init(self, ctx: Ctx) -> None:
        """Init system / getty configuration."""

    def setup_network(self, ctx: Ctx) -> None:
        """Distribution network files."""

    # --- identity ----------------------------------------------------------------------------

    def hostname(self, ctx: Ctx) -> str:
        return ctx.cfg.hostname or "localhost"

    def set_hostname(self, ctx: Ctx) -> None:
        hostname = self.hostname(ctx)
        self.update_etc_hosts(ctx, hostname)
        ctx.files.write("/etc/hostname", f"{short_name(hostname)}\n")

    def update_etc_hosts(self, ctx: Ctx, hostname: str) -> None:
        files = ctx.files
        if files.ignored("/etc/hosts"):
            return
        ipv4, ipv6 = primary_ips(ctx.cfg)
        hostip = ipv4 or ipv6
        search, _servers = ctx.dns()
        namepart = short_name(hostname)
        if "." in hostname:
            names = f"{hostname} {namepart}"
        else:
            names = " ".join([f"{hostname}.{domain}" for domain in search] + [hostname])
        section = ""
        old = files.read("/etc/hosts")
        if old is None:
            section = LO4 + LO6
        else:
            # localhost lines inside our own block do not count
            outside = remove_pve_sections(old)
            if not re.search(r"^[ \t]*127\.0\.0\.1[ \t]+", outside, re.MULTILINE):
                section += LO4
            if not re.search(r"^[ \t]*::1[ \t]+", outside, re.MULTILINE):
                section += LO6
        if hostip is not None:
            section += f"{hostip} {names}\n"
        elif namepart != "localhost":
            section += f"127.0.1.1 {names}\n"
        else:
            section += f"127.0.1.1 {namepart}\n"
        files.modify("/etc/hosts", section)

    def remove_lxc_name_from_etc_hosts(self, ctx: Ctx) -> None:
        """Templates from images.linuxcontainers.org carry a bogus ``127.0.1.1 LXC_NAME`` line."""
        old = ctx.files.read("/etc/hosts")
        if old is None:
            return
        lines = [ln for ln in old.split("\n") if not re.fullmatch(r"127.0.1.1\s+LXC_NAME", ln)]
        new = "\n".join(lines)
        if new != old:
            ctx.files.write("/etc/hosts", new if new.endswith("\n") else new + "\n")

    def set_dns(self, ctx: Ctx) -> None:
        search, servers = ctx.dns()
        data = f"search {' '.join(search)}\n" if search else ""
        data += "".join(f"nameserver {ns}\n" for ns in servers)
        ctx.files.modify("/etc/resolv.conf", data, mode="replace")

    def set_timezone(self, ctx: Ctx) -> None:
        zone = ctx.cfg.timezone
        if not zone:
            return
        if zone == "host":
            target = ctx.host.localtime
            content = ctx.host.timezone
        else:
            target = posixpath.join("/usr/share/zoneinfo", zone)
            content = zone
        if target is None or not ctx.files.exists(target):
            ctx.warn(f"container does not have {target}, timezone can not be modified")
            return
        if ctx.files.realpath("/etc/localtime") != target:
            ctx.files.replace_symlink(target, "/etc/localtime")
        if content and ctx.files.exists("/etc/timezone"):
            ctx.files.write("/etc/timezone", f"{content}\n")

    # --- accounts ----------------------------------------------------------------------------

    def set_user_password(self, ctx: Ctx, shadow_hash: str, user: str = "root") -> None:
        files = ctx.files
        if not files.exists("/etc/passwd"):
            return
        if files.exists("/etc/shadow"):
            days = int(time.time() // 86400)
            # Debian's root:shadow 0640 where a symlink is replaced by a file; never 0644
            shadow_gid = files.host_gid("shadow")
            new_mode = 0o600 if shadow_gid is None else 0o640
            _replace_pw(
                ctx,
                "/etc/shadow",
                rf"^{user}:[^:]*:[^:]*:",
                f"{user}:{shadow_hash}:{days}:",
                new_mode=new_mode,
                new_gid=shadow_gid,
            )
            _replace_pw(ctx, "/etc/passwd", rf"^{user}:[^:]*:", f"{user}:x:")
        else:
            _replace_pw(ctx, "/etc/passwd", rf"^{user}:[^:]*:", f"{user}:{shadow_hash}:")

    def set_authorized_keys(self, ctx: Ctx, keys: str, user: str = "root") -> None:
        files = ctx.files
        home = "/root/" if user == "root" else f"/home/{user}/"
        passwd = files.read("/etc/passwd")
        if passwd is not None:
            match = re.search(rf"^{user}:(?:[^:]*:){{4}}([^:]*):", passwd, re.MULTILINE)
            if match:
                home = match.group(1)
        if not (files.is_dir(home) or files.is_symlink(home)):
            raise ConfigError(f"home directory '{home}' of {user} does not exist!")
        ssh_dir = posixpath.join(home, ".ssh")
        if not files.is_dir(ssh_dir):
            files.mkdir(ssh_dir, 0o700)
        files.modify(posixpath.join(ssh_dir, "authorized_keys"), keys, perms=0o700)

    # --- misc --------------------------------------------------------------------------------

    def randomize_crontab(self, ctx: Ctx) -> None:
        """New minutes for root's cron jobs, so a fleet of clones does not run them in lock-step."""
        files = ctx.files
        paths = ["/etc/crontab"] if files.exists("/etc/crontab") else []
        paths += [
            f"/etc/cron.d/{name}"
            for name in files.listdir("/etc/cron.d")
            if CRON_D_NAME_RE.fullmatch(name) and files.exists(f"/etc/cron.d/{name}")
        ]
        for path in paths:
            old = files.read(path) or ""
            out = []
            for line in perl_lines(old):
                match = CRON_ROOT_RE.fullmatch(line)
                if match:
                    line = f"{int(ctx.rng() * 59)}{match.group(1)}"
                out.append(f"{line}\n")
            new = "".join(out)
            if new != old:
                files.write(path, new)

    def uses_systemd(self, ctx: Ctx) -> bool:
        return ctx.files.is_executable("/lib/systemd/systemd") or ctx.files.is_executable(
            "/usr/lib/systemd/systemd"
        )

    def init_is_systemd(self, ctx: Ctx) -> bool:
        target = ctx.files.readlink("/sbin/init")
        return target is not None and target.endswith("/systemd")

    def clear_machine_id(self, ctx: Ctx, clone: bool = False) -> None:
        files = ctx.files
        systemd = self.uses_systemd(ctx)
        dbus_id = "/var/lib/dbus/machine-id"
        if systemd and files.exists(dbus_id) and not files.is_symlink(dbus_id):
            files.unlink(dbus_id)
        if not files.exists("/etc/machine-id"):
            return
        if not clone:
            files.unlink("/etc/machine-id")
        elif systemd and (files.read_firstline("/etc/machine-id") or "") != "uninitialized":
            # an empty file (not a missing one) keeps systemd from treating boot as first boot
            files.write("/etc/machine-id", "\n")

    def devttydir(self, ctx: Ctx) -> str:
        return "lxc/" if self.lxc_tty_dir and not ctx.cfg.unprivileged else ""

    def rewrite_inittab(self, ctx: Ctx, getty_re: re.Pattern[str], getty_line: str) -> None:
        """Busybox-style inittab: drop the getty lines, add one per tty (never tty7).

        ``getty_line`` is formatted with ``tty`` (the number)."""
        old = ctx.files.read("/etc/inittab")
        if old is None:
            return
        lines = [ln for ln in perl_lines(old) if not getty_re.match(ln)]
        for tty in range(1, ctx.tty_count + 1):
            if tty != 7:
                lines.append(getty_line.format(tty=tty))
        ctx.files.write("/etc/inittab", "\n".join(lines) + "\n")

    def setup_securetty(self, ctx: Ctx, devices: list[str] | None = None) -> None:
        path = "/etc/securetty"
        old = ctx.files.read(path)
        if old is None:
            return  # without securetty root may log in everywhere
        if devices is None:
            devices = [
                f"{self.devttydir(ctx)}{d}" for d in ("console", "tty1", "tty2", "tty3", "tty4")
            ]
        data = old[:-1] if old.endswith("\n") else old
        data += "\n"
        for dev in devices:
            if not re.search(rf"^{re.escape(dev)}\s*$", data, re.MULTILINE):
                data += f"{dev}\n"
        if data != old:
            ctx.files.write(path, data)

    def systemd_unit_dir(self, ctx: Ctx) -> str:
        if ctx.files.is_executable("/lib/systemd/systemd"):
            return "/lib/systemd/system"
        return "/usr/lib/systemd/system"

    def setup_container_getty_service(self, ctx: Ctx) -> None:
        files = ctx.files
        unit_dir = self.systemd_unit_dir(ctx)
        template = f"{unit_dir}/container-getty@.service"
        instance = "container-getty@"
        if not files.exists(template):
            template, instance = f"{unit_dir}/getty@.service", "getty@tty"
            if not files.exists(template):
                return
        raw = files.read(template) or ""
        fixed = re.sub(r"pts/%I|lxc/tty%I", f"{self.devttydir(ctx)}tty%I", raw)
        if fixed != raw:
            files.write(template, fixed)
        wants = "/etc/systemd/system/getty.target.wants"
        for i in range(1, 7):
            # never two gettys on one tty: drop both kinds, re-enable the requested ones
            files.unlink(f"{wants}/getty@tty{i}.service")
            files.unlink(f"{wants}/container-getty@{i}.service")
            if i <= ctx.tty_count:
                files.symlink(template, f"{wants}/{instance}{i}.service")
        files.unlink("/etc/systemd/system/getty.target")  # a masked getty.target hides them

    def fixup_old_getty(self, ctx: Ctx) -> None:
        """systemd without container-getty@ (CentOS 7.1): let getty@ run on /dev/tty."""
        files = ctx.files
        unit_dir = self.systemd_unit_dir(ctx)
        getty = f"{unit_dir}/getty@.service"
        raw = files.read(getty)
        if raw is None:
            return
        if files.exists(f"{unit_dir}/container-getty@.service"):
            fixed = re.sub(
                r"(?m)^ConditionPathExists=/dev/tty$", "ConditionPathExists=/dev/tty0", raw, count=1
            )
        else:
            fixed = re.sub(
                r"(?m)^ConditionPathExists=/dev/tty0$", "ConditionPathExists=/dev/tty", raw, count=1
            )
        if fixed != raw:
            files.write(getty, fixed)

    def setup_systemd_preset(self, ctx: Ctx, extras: Mapping[str, bool] | None = None) -> None:
        """First-boot presets (only used while /etc/machine-id is missing)."""
        units = {**PRESET_DEFAULTS, **(extras or {})}
        lines = [PRESET_HEADER]
        lines += [f"{'enable' if units[u] else 'disable'} {u}" for u in sorted(units)]
        ctx.files.make_path(posixpath.dirname(PRESET_FILE))
        ctx.files.write(PRESET_FILE, "\n".join(lines) + "\n")

    def setup_systemd_networkd(self, ctx: Ctx) -> None:
        nics = named_nics(ctx.cfg)
        if nics:
            ctx.files.make_path(NETWORK_DIR)
        for nic in nics:
            ctx.files.write(networkd_path(nic), render_networkd(nic))


def _replace_pw(
    ctx: Ctx,
    path: str,
    pattern: str,
    replacement: str,
    *,
    new_mode: int = 0o644,
    new_gid: int | None = None,
) -> None:
    """Rewrite one account line; owner and mode of passwd/shadow are preserved by ``write``
    (``new_mode``/``new_gid`` apply where ``path`` was no regular file, see ``write``)."""
    old = ctx.files.read(path)
    if old is None:
        return
    new = "".join(
        re.sub(pattern, lambda _m: replacement, line, count=1)
        for line in re.findall(r"[^\n]*\n|[^\n]+$", old)
    )
    ctx.files.write(path, new, new_mode=new_mode, new_gid=new_gid)
