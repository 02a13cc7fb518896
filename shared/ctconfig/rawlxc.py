"""Raw ``lxc.*`` keys in a container config: the allow-list, deprecated names, forbidden keys.

A raw entry is ``lxc.<key>: value`` or ``lxc.<key> = value``; it is passed to LXC verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LINE_RE = re.compile(r"^(lxc\.[a-z0-9_\-.]+)(:|\s*=)\s*(.*?)\s*$", re.ASCII)

# folded into the ``env`` option instead of the raw list
ENV_RUNTIME_KEY = "lxc.environment.runtime"

ALLOWED_KEYS = frozenset(
    [
        "lxc.apparmor.profile",
        "lxc.apparmor.allow_incomplete",
        "lxc.apparmor.allow_nesting",
        "lxc.apparmor.raw",
        "lxc.selinux.context",
        "lxc.include",
        "lxc.arch",
        "lxc.uts.name",
        "lxc.signal.halt",
        "lxc.signal.reboot",
        "lxc.signal.stop",
        "lxc.init.cmd",
        "lxc.init.cwd",
        "lxc.init.uid",
        "lxc.init.gid",
        "lxc.init.groups",
        "lxc.pty.max",
        "lxc.console.logfile",
        "lxc.console.path",
        "lxc.tty.max",
        "lxc.devtty.dir",
        "lxc.hook.autodev",
        "lxc.autodev",
        "lxc.kmsg",
        "lxc.mount.fstab",
        "lxc.mount.entry",
        "lxc.mount.auto",
        "lxc.rootfs.mount",
        "lxc.cap.drop",
        "lxc.cap.keep",
        "lxc.seccomp.profile",
        "lxc.seccomp.notify.proxy",
        "lxc.seccomp.notify.cookie",
        "lxc.idmap",
        "lxc.hook.pre-start",
        "lxc.hook.pre-mount",
        "lxc.hook.mount",
        "lxc.hook.start",
        "lxc.hook.stop",
        "lxc.hook.post-stop",
        "lxc.hook.clone",
        "lxc.hook.destroy",
        "lxc.hook.version",
        "lxc.log.level",
        "lxc.log.file",
        "lxc.start.auto",
        "lxc.start.delay",
        "lxc.start.order",
        "lxc.group",
        "lxc.environment",
        "lxc.environment.runtime",
        "lxc.environment.hooks",
        # namespaced through CLONE_NEWIPC, so safe to pass through
        "lxc.sysctl.fs.mqueue",
        "lxc.sysctl.kernel.msgmax",
        "lxc.sysctl.kernel.msgmnb",
        "lxc.sysctl.kernel.msgmni",
        "lxc.sysctl.kernel.sem",
        "lxc.sysctl.kernel.shmall",
        "lxc.sysctl.kernel.shmmax",
        "lxc.sysctl.kernel.shmmni",
        "lxc.sysctl.kernel.shm_rmid_forced",
    ]
)

# whole families LXC defines (and ctkit passes through)
ALLOWED_PREFIXES = ("lxc.cgroup2.", "lxc.prlimit.", "lxc.net.")

FORBIDDEN_KEYS = {
    "lxc.rootfs.path": "lxc.rootfs.path is auto generated from rootfs",
    "lxc.rootfs.options": (
        'lxc.rootfs.options is not supported, please use mount point options in the "rootfs" key'
    ),
}

# LXC 2 names, removed with LXC 3: accepted with a warning naming the new key
DEPRECATED_KEYS = {
    "lxc.aa_profile": "lxc.apparmor.profile",
    "lxc.aa_allow_incomplete": "lxc.apparmor.allow_incomplete",
    "lxc.console": "lxc.console.path",
    "lxc.devttydir": "lxc.tty.dir",
    "lxc.haltsignal": "lxc.signal.halt",
    "lxc.rebootsignal": "lxc.signal.reboot",
    "lxc.stopsignal": "lxc.signal.stop",
    "lxc.id_map": "lxc.idmap",
    "lxc.init_cmd": "lxc.init.cmd",
    "lxc.loglevel": "lxc.log.level",
    "lxc.logfile": "lxc.log.file",
    "lxc.mount": "lxc.mount.fstab",
    "lxc.network.type": "lxc.net.INDEX.type",
    "lxc.network.flags": "lxc.net.INDEX.flags",
    "lxc.network.link": "lxc.net.INDEX.link",
    "lxc.network.mtu": "lxc.net.INDEX.mtu",
    "lxc.network.name": "lxc.net.INDEX.name",
    "lxc.network.hwaddr": "lxc.net.INDEX.hwaddr",
    "lxc.network.ipv4": "lxc.net.INDEX.ipv4.address",
    "lxc.network.ipv4.gateway": "lxc.net.INDEX.ipv4.gateway",
    "lxc.network.ipv6": "lxc.net.INDEX.ipv6.address",
    "lxc.network.ipv6.gateway": "lxc.net.INDEX.ipv6.gateway",
    "lxc.network.script.up": "lxc.net.INDEX.script.up",
    "lxc.network.script.down": "lxc.net.INDEX.script.down",
    "lxc.pts": "lxc.pty.max",
    "lxc.se_context": "lxc.selinux.context",
    "lxc.seccomp": "lxc.seccomp.profile",
    "lxc.tty": "lxc.tty.max",
    "lxc.utsname": "lxc.uts.name",
}


@dataclass(frozen=True)
class KeyCheck:
    """Outcome of :func:`check_key`: accepted or not, and the message to show (if any)."""

    accepted: bool
    message: str | None = None


def check_key(vmid: int, key: str) -> KeyCheck:
    """Classify a raw key; messages are Proxmox's ``vm <id> - ...`` texts."""
    if key.startswith("lxc.limit."):
        return KeyCheck(True, f"vm {vmid} - {key}: lxc.limit.* was renamed to lxc.prlimit.*")
    new_name = DEPRECATED_KEYS.get(key)
    if new_name is not None:
        return KeyCheck(True, f"vm {vmid} - {key} is deprecated and was renamed to {new_name}")
    forbidden = FORBIDDEN_KEYS.get(key)
    if forbidden is not None:
        return KeyCheck(False, f"vm {vmid} - {key}: {forbidden}")
    if key in ALLOWED_KEYS or key.startswith(ALLOWED_PREFIXES):
        return KeyCheck(True)
    if key.startswith("lxc.cgroup."):
        # cgroup v1 keys: still meaningful on v1 hosts, but Proxmox no longer generates them
        return KeyCheck(True, f"vm {vmid} - {key}: lxc.cgroup.* is deprecated, use lxc.cgroup2.*")
    return KeyCheck(False)


def split_line(line: str) -> tuple[str, str] | None:
    """``(key, value)`` of a raw ``lxc.*`` line in colon or ``=`` form, else None."""
    m = LINE_RE.match(line)
    return (m.group(1), m.group(3)) if m else None
