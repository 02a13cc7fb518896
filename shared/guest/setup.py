"""The entry point: pick the distro plugin for a root file system and run its hooks chrooted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import errors
from shared.errors import ConfigError, CtkitError

from .alpine import Alpine
from .archlinux import ArchLinux
from .base import Plugin, short_name
from .centos import CentOS
from .chroot import run_in_root
from .config import GuestConfig
from .context import Ctx, HostInfo
from .debian import Debian
from .detect import UNDETECTABLE, Probe, check_version, classify, probe_rootfs, systemd_version
from .devuan import Devuan
from .fedora import Fedora
from .files import CtFiles
from .gentoo import Gentoo
from .hostinfo import gather_host_info
from .nixos import NixOS
from .openeuler import OpenEuler
from .opensuse import OpenSUSE
from .password import shadow_hash
from .random48 import RandomSource, system_random
from .sshkeys import generate_host_keys
from .ubuntu import Ubuntu
from .unmanaged import Unmanaged

PLUGINS: dict[str, type[Plugin]] = {
    cls.ostype: cls
    for cls in (
        Debian, Devuan, Ubuntu, CentOS, Fedora, OpenSUSE, ArchLinux, Alpine, Gentoo, NixOS,
        OpenEuler, Unmanaged,
    )
}  # fmt: skip
_RAISABLE: dict[str, type[CtkitError]] = {
    cls.__name__: cls for cls in (errors.CtkitError, errors.ConfigError, errors.CommandError)
}

SYSTEMD_NESTING_FROM = 241  # newer systemd wants to set up its own namespaces
Step = Callable[[Plugin, Ctx], Any]


class GuestSetup:
    """Guest setup of one container root; build it with :meth:`for_rootfs`."""

    def __init__(
        self,
        rootdir: Path,
        cfg: GuestConfig,
        plugin: Plugin,
        host: HostInfo,
        *,
        warnings: list[str] | None = None,
        log: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
        rng: RandomSource | None = None,
        uuid_factory: Callable[[], str] | None = None,
    ) -> None:
        self.rootdir = Path(rootdir)
        self.cfg = cfg
        self.plugin = plugin
        self.host = host
        self.warnings: list[str] = list(warnings or [])
        self.log = log
        self._warn = warn if warn is not None else (lambda text: log(f"WARN: {text}"))
        # Randomness is consumed in the forked child: its state never flows back here, so a
        # seeded source gives the same numbers on every call (what Proxmox's tests expect).
        self.rng: RandomSource = rng if rng is not None else system_random()
        self.uuid_factory = uuid_factory if uuid_factory is not None else _random_uuid

    @classmethod
    def for_rootfs(
        cls,
        rootdir: Path,
        cfg: GuestConfig,
        *,
        host_dns: tuple[list[str], list[str]] | None = None,
        log: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        host_localtime: Path = Path("/etc/localtime"),
        host_timezone: Path = Path("/etc/timezone"),
        rng: RandomSource | None = None,
        uuid_factory: Callable[[], str] | None = None,
    ) -> GuestSetup:
        """Detect the OS (unless ``ostype: unmanaged``) and pick its plugin.

        ``host_dns`` = ``(nameservers, searchdomains)`` to use where the config has none;
        ``None`` reads them from ``resolv_conf``.
        """
        host = gather_host_info(host_dns, resolv_conf, host_localtime, host_timezone)
        setup = cls(
            rootdir, cfg, Unmanaged(None), host, log=log, warn=warn, rng=rng,
            uuid_factory=uuid_factory,
        )  # fmt: skip
        if cfg.ostype != "unmanaged":
            setup.plugin = setup._detect_plugin(probe_rootfs(Path(rootdir)))
        return setup

    def _detect_plugin(self, probe: Probe) -> Plugin:
        ostype, warnings = classify(probe)
        for text in warnings:
            self.warn(text)
        if ostype is None:
            raise ConfigError(UNDETECTABLE)
        expected = self.cfg.ostype or ostype
        if ostype != expected:
            self.warn(f"got unexpected ostype ({ostype} != {expected})")
            if not probe.etc:
                self.warn("WARNING: /etc not present in CT, is the rootfs mounted?")
        version, warnings = check_version(ostype, probe)
        for text in warnings:
            self.warn(text)
        plugin_cls = PLUGINS.get(ostype)
        if plugin_cls is None:
            raise ConfigError(f"no such OS type '{ostype}'")
        return plugin_cls(version, probe.os_release())

    # --- state -----------------------------------------------------------------------------

    @property
    def ostype(self) -> str:
        return self.plugin.ostype

    @property
    def version(self) -> str | None:
        return self.plugin.version

    @property
    def unmanaged(self) -> bool:
        return isinstance(self.plugin, Unmanaged)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self._warn(text)

    # --- hooks -----------------------------------------------------------------------------

    def post_create(self, *, password: str | None, ssh_keys: str | None) -> None:
        """The create-time hook: machine-id, fixups, crontab, password, keys, then as pre_start."""
        hashed = shadow_hash(password)  # hashed here: the chrooted child only writes
        self._run(lambda plugin, ctx: plugin.post_create(ctx, hashed, ssh_keys))

    def pre_start(self) -> None:
        """Every start: /fastboot, init/getty, network, hostname and hosts, resolv.conf, zone."""
        self._run(lambda plugin, ctx: plugin.pre_start(ctx))

    def template_fixup(self) -> None:
        """The restore path: only the distro's template repairs."""
        self._run(lambda plugin, ctx: plugin.template_fixup(ctx))

    def clone_fixup(self) -> None:
        """A clone gets an empty machine-id so that it boots with a new one."""
        self._run(lambda plugin, ctx: plugin.clear_machine_id(ctx, clone=True))

    def set_hostname(self, old: str | None, new: str) -> None:
        """Rename: rewrite the hostname file and the PVE block of /etc/hosts.

        ``old`` is not needed: lines outside our block are never touched.
        """
        self.cfg.hostname = new
        self._run(lambda plugin, ctx: plugin.set_hostname(ctx))

    def set_network(self) -> None:
        self._run(lambda plugin, ctx: plugin.setup_network(ctx))

    def set_dns(self) -> None:
        self._run(lambda plugin, ctx: plugin.set_dns(ctx))

    def set_timezone(self) -> None:
        self._run(lambda plugin, ctx: plugin.set_timezone(ctx))

    def regenerate_ssh_host_keys(self) -> None:
        """New rsa/ecdsa/ed25519 host keys if the container has /etc/ssh and the host ssh-keygen."""
        if self.unmanaged or not self._run(lambda _p, ctx: ctx.files.is_dir("/etc/ssh")):
            return
        comment = f"root@{short_name(self.cfg.hostname or 'localhost')}"
        keys = generate_host_keys(comment, self.log)
        if keys is None:
            return

        def write(_plugin: Plugin, ctx: Ctx) -> None:
            for path, (content, mode) in keys.items():
                ctx.files.write(path, content, mode)

        self._run(write)

    def check_systemd_nesting(self) -> None:
        """Warn when the container's systemd needs ``features: nesting=1`` (systemd > 241)."""
        if self.unmanaged or self.cfg.features.get("nesting") in ("1", "on", "yes", "true"):
            return
        version = systemd_version(self.rootdir)
        if version is not None and version > SYSTEMD_NESTING_FROM:
            self.warn(f"Systemd {version} detected. You may need to enable nesting.")

    # --- the chrooted call -----------------------------------------------------------------

    def _run(self, step: Step) -> Any:
        if self.unmanaged:
            return None  # touches nothing, not even by entering the root file system
        cfg, host, rng, new_uuid, plugin = (
            self.cfg,
            self.host,
            self.rng,
            self.uuid_factory,
            self.plugin,
        )

        def inside() -> dict[str, Any]:
            ctx = Ctx(CtFiles(cfg.root_uid, cfg.root_gid), cfg, host, rng, new_uuid)
            try:
                result = step(plugin, ctx)
            except CtkitError as err:
                return {"messages": ctx.messages, "error": [type(err).__name__, err.message]}
            except OSError as err:
                text = f"{err.strerror or err}" + (f" '{err.filename}'" if err.filename else "")
                return {"messages": ctx.messages, "error": ["ConfigError", text]}
            return {"messages": ctx.messages, "result": result}

        reply = run_in_root(self.rootdir, inside)
        for level, text in reply["messages"]:
            if level == "warn":
                self.warn(text)
            else:
                self.log(text)
        if "error" in reply:
            kind, text = reply["error"]
            raise _RAISABLE.get(kind, CtkitError)(text)
        return reply.get("result")


def _random_uuid() -> str:
    return str(uuid.uuid4())
