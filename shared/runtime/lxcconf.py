"""Generate ``<lxcpath>/<vmid>/config`` from a container's settings (spec pct.md §3).

The generator works on :class:`LxcView`, the handful of settings LXC needs, so it can be tested
against golden files for both cgroup layouts without a container. Deviations from Proxmox, all
because ctkit has no pve-lxc-syscalld, AppArmor profiles of its own, or lxcnetaddbr:
AppArmor lines only where the host has AppArmor; bridges are attached with LXC's own
``lxc.net.N.link`` (and ``veth.vlan.id`` for tags), with ctkit's up-script only for rate limits and
``link_down``; the hooks are ctkit's.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import ConfigError
from ..printable import printable
from . import entrypoints
from .cgroups import Layout, Limits, device_key, lxc_keys

LXC_CONFIG_DIR = Path("/usr/share/lxc/config")
DEFAULT_IDMAP = (("u", 0, 100000, 65536), ("g", 0, 100000, 65536))


@dataclass
class NetView:
    index: int
    name: str
    hwaddr: str | None = None
    bridge: str | None = None
    mtu: int | None = None
    tag: int | None = None
    rate: float | None = None
    link_down: bool = False


@dataclass
class DevView:
    kind: str  # "c" | "b"
    major: int
    minor: int
    deny_write: bool = False
    mount_entry: str | None = None  # binds the node the pre-start hook prepares


@dataclass
class LxcView:
    vmid: int
    arch: str = "amd64"
    ostype: str = "unmanaged"
    unprivileged: bool = True
    hostname: str | None = None
    tty: int = 2
    console: bool = True
    limits: Limits = field(default_factory=lambda: Limits(memory=512, swap=512))
    cores: int | None = None
    features: dict[str, str] = field(default_factory=dict)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    nets: list[NetView] = field(default_factory=list)
    devs: list[DevView] = field(default_factory=list)
    raw: list[tuple[str, str]] = field(default_factory=list)
    mount_entries: list[str] = field(default_factory=list)  # staged mount points bound back


def include_file(ostype: str, kind: str, config_dir: Path = LXC_CONFIG_DIR) -> str:
    """``<ostype>.<kind>.conf`` when LXC ships one, else the generic ``<kind>.conf``."""
    specific = config_dir / f"{ostype}.{kind}.conf"
    return str(specific if specific.exists() else config_dir / f"{kind}.conf")


def raw_keys(view: LxcView) -> set[str]:
    return {k for k, _v in view.raw}


def idmap_entries(view: LxcView) -> list[tuple[str, int, int, int]]:
    """The effective id map: raw ``lxc.idmap`` lines, else the default for unprivileged CTs."""
    entries: list[tuple[str, int, int, int]] = []
    for key, value in view.raw:
        if key == "lxc.idmap":
            kind, ct, host, length = value.split()
            entries.append((kind, int(ct), int(host), int(length)))
    if entries or not view.unprivileged:
        return entries
    return list(DEFAULT_IDMAP)


def root_ids(view: LxcView) -> tuple[int, int]:
    """Host uid/gid of the container's root (0/0 when id 0 is not mapped)."""
    uid = gid = 0
    for kind, ct, host, length in idmap_entries(view):
        if ct <= 0 < ct + length:
            if kind == "u":
                uid = host - ct
            else:
                gid = host - ct
    return uid, gid


def hook_command() -> str:
    return entrypoints.command(entrypoints.HOOK, "--root", str(paths.root()))


def seccomp_rules(view: LxcView, config_dir: Path = LXC_CONFIG_DIR) -> str:
    """The per-CT seccomp file for unprivileged CTs: LXC's list plus Proxmox's extra rules."""
    base = (config_dir / "common.seccomp").read_text()
    extra = []
    if view.features.get("keyctl") != "1":
        extra.append("keyctl errno 38")
    extra.append("ioctl errno 1 [1,0x9400,SCMP_CMP_MASKED_EQ,0xff00]")
    extra.append("socket errno 97 [0,38,SCMP_CMP_EQ,0]")
    return base.rstrip("\n") + "\n" + "\n".join(extra) + "\n"


@dataclass(frozen=True)
class HostInfo:
    """What the generated config depends on besides the container itself."""

    layout: Layout
    memsw: bool = True
    apparmor: bool = False
    cpus: int = 1
    seed: int | None = None
    config_dir: Path = LXC_CONFIG_DIR
    # the key of the config's ``env``: Proxmox's LXC (6.0 on) knows ``lxc.environment.runtime``
    # (init and attached processes); LXC 5, Debian 12's, refuses it and has ``lxc.environment``
    env_key: str = "lxc.environment.runtime"


Lines = list[tuple[str, str]]


BREAKS_LINE_RE = re.compile("[\r\n\0]")


def generate(view: LxcView, host: HostInfo) -> str:
    lines = _base_lines(view, host) + _security_lines(view, host)
    lines += _identity_lines(view, host)
    lines += lxc_keys(view.limits, host.layout, memsw=host.memsw)
    lines.append(("lxc.rootfs.path", str(paths.lxc_dir(view.vmid) / "rootfs")))
    if view.entrypoint:
        lines.append(("lxc.init.cmd", view.entrypoint))
    for net in view.nets:
        lines += _net_lines(view.vmid, net)
    lines += [(host.env_key, var) for var in view.env]
    lines += view.raw
    lines += _cpuset_lines(view, host)
    hook = hook_command()
    lines += [("lxc.hook.pre-start", hook), ("lxc.hook.post-stop", hook)]
    log = paths.lxc_dir(view.vmid) / "lxc.log"
    lines += [("lxc.log.file", str(log)), ("lxc.log.level", "WARN")]
    for key, value in lines:
        if BREAKS_LINE_RE.search(key) or BREAKS_LINE_RE.search(value):
            # LXC ends a line at CR as well: a value from a hand-edited config carrying one
            # added keys of its own (lxc.rootfs.path = / gave the container the host's root)
            raise ConfigError(f"invalid character in '{printable(key)} = {printable(value)}'")
    return "".join(f"{k} = {v}\n" for k, v in lines)


def _base_lines(view: LxcView, host: HostInfo) -> Lines:
    lines = [
        ("lxc.cgroup.relative", "0"),
        ("lxc.cgroup.dir.monitor", f"lxc.monitor/{view.vmid}"),
        ("lxc.cgroup.dir.container", f"lxc/{view.vmid}"),
        ("lxc.cgroup.dir.container.inner", "ns"),
        ("lxc.arch", view.arch),
        ("lxc.include", include_file(view.ostype, "common", host.config_dir)),
    ]
    if view.unprivileged or "lxc.idmap" in raw_keys(view):
        lines.append(("lxc.include", include_file(view.ostype, "userns", host.config_dir)))
    return lines


def _security_lines(view: LxcView, host: HostInfo) -> Lines:
    rawk = raw_keys(view)
    lines: Lines = []
    if view.unprivileged and "lxc.seccomp.profile" not in rawk:
        lines.append(("lxc.seccomp.profile", str(paths.lxc_dir(view.vmid) / "rules.seccomp")))
    if host.apparmor and "lxc.apparmor.profile" not in rawk:
        lines += _apparmor_lines(view)
    if view.features.get("fuse") == "1":
        lines.append(("lxc.mount.entry", "/dev/fuse dev/fuse none bind,create=file 0 0"))
    if view.unprivileged and view.features.get("force_rw_sys") != "1":
        lines.append(("lxc.mount.auto", "sys:mixed"))
    if view.entrypoint and view.entrypoint != "/sbin/init":
        lines.append(("lxc.mount.entry", "shm dev/shm tmpfs rw,nosuid,nodev,create=dir 0 0"))
    lines += [("lxc.mount.entry", entry) for entry in view.mount_entries]
    for dev in view.devs:
        rule = f"{dev.kind} {dev.major}:{dev.minor}"
        lines.append((device_key(host.layout, "allow"), f"{rule} rwm"))
        if dev.deny_write:
            lines.append((device_key(host.layout, "deny"), f"{rule} w"))
        if dev.mount_entry:
            lines.append(("lxc.mount.entry", dev.mount_entry))
    lines.append(("lxc.monitor.unshare", "1"))
    if view.unprivileged and "lxc.idmap" not in rawk:
        lines += [("lxc.idmap", f"{k} {ct} {hid} {n}") for k, ct, hid, n in DEFAULT_IDMAP]
    return lines


def _identity_lines(view: LxcView, host: HostInfo) -> Lines:
    lines: Lines = []
    if not view.console:
        lines += [("lxc.console.path", "none"), (device_key(host.layout, "deny"), "c 5:1 rwm")]
        # LXC 5.0 makes common.conf's tty directory (/dev/lxc) only with a console: without
        # one, a privileged container's ttys found no directory and it could not start
        lines.append(("lxc.tty.dir", ""))
    lines += [
        ("lxc.tty.max", str(view.tty)),
        ("lxc.environment", "TERM=linux"),
        ("lxc.uts.name", view.hostname or f"CT{view.vmid}"),
    ]
    return lines


def _cpuset_lines(view: LxcView, host: HostInfo) -> Lines:
    rawk = raw_keys(view)
    if not view.cores or {"lxc.cgroup.cpuset.cpus", "lxc.cgroup2.cpuset.cpus"} & rawk:
        return []
    prefix = "lxc.cgroup2" if host.layout is Layout.V2 else "lxc.cgroup"
    return [(f"{prefix}.cpuset.cpus", pick_cpus(view.cores, host.cpus, host.seed))]


def _apparmor_lines(view: LxcView) -> Lines:
    out = [("lxc.apparmor.profile", "generated"), ("lxc.apparmor.raw", "allow mqueue,")]
    if view.features.get("nesting") == "1":
        out += [("lxc.apparmor.allow_nesting", "1"), ("lxc.apparmor.raw", "allow userns,")]
    else:
        out += [
            ("lxc.apparmor.raw", "deny mount -> /proc/,"),
            ("lxc.apparmor.raw", "deny mount -> /sys/,"),
        ]
    for fstype in filter(None, view.features.get("mount", "").split(";")):
        out.append(("lxc.apparmor.raw", f"mount fstype={fstype},"))
    if view.features.get("fuse") == "1":
        out.append(("lxc.apparmor.raw", "mount fstype=fuse,"))
    return out


def veth_name(vmid: int, index: int) -> str | None:
    name = f"veth{vmid}i{index}"
    return name if len(name) <= 15 else None


def _net_lines(vmid: int, net: NetView) -> Lines:
    p = f"lxc.net.{net.index}"
    out = [(f"{p}.type", "veth")]
    pair = veth_name(vmid, net.index)
    if pair:
        out.append((f"{p}.veth.pair", pair))
    if net.hwaddr:
        out.append((f"{p}.hwaddr", net.hwaddr))
    out.append((f"{p}.name", net.name))
    if net.mtu:
        out.append((f"{p}.mtu", str(net.mtu)))
    if net.bridge:
        out.append((f"{p}.link", net.bridge))
        if net.tag:
            out.append((f"{p}.veth.vlan.id", str(net.tag)))
    if net.rate or net.link_down:
        script = entrypoints.command(
            entrypoints.NET_UPSCRIPT, "--root", str(paths.root()), "--index", str(net.index)
        )
        out.append((f"{p}.script.up", script))
    return out


def pick_cpus(cores: int, host_cpus: int, seed: int | None = None) -> str:
    """A random subset of the host's CPUs (Proxmox spreads containers this way)."""
    count = min(cores, host_cpus)
    chosen = sorted(random.Random(seed).sample(range(host_cpus), count))
    return ",".join(str(c) for c in chosen)
