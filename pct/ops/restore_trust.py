"""What a restore takes from an archive's config: nothing that reaches outside the container.

An archive is untrusted input, and so is the config inside it. Most of a container config only
describes the container itself, but a few entries act on the host at the next ``pct start``:

* raw ``lxc.*`` keys (``lxc.hook.pre-start`` runs a host command as root, ``lxc.mount.entry``
  bind-mounts any host path, ``lxc.idmap`` maps host ids, ``lxc.apparmor.profile`` lifts
  confinement),
* ``hookscript`` (a host script run as root at every start and stop),
* bind and device mount points (``mp0: /etc,mp=/hostetc`` hands a host directory to the guest),
* a mount point's ``idmap=`` option (``u:1:0:1`` makes container uid 1 host root on that
  volume, whose directory the host sees: a setuid-root file made there is a host root shell);
  only the option goes, the volume is restored,
* ``devN`` (host device passthrough).

Unless the archive is trusted explicitly (``--trust-archive``; ``--force`` is about replacing a
container, not about trusting an archive), these are dropped from the backed-up config before
it is planned and merged, one log line each saying what was dropped and how to keep it. The
command line's own options are the administrator's and are never touched. A backup of an
ordinary container holds none of these, so its restore is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from shared.ctconfig.config import Config

Log = Callable[[str], None]
TRUST_OPTION = "--trust-archive"
SHOWN_LIMIT = 200
DEV_KEY_RE = re.compile(r"dev\d+")
HOOKSCRIPT_WHY = "a hookscript runs on the host as root"
MP_WHY = {
    "bind": "a bind mount point hands a host directory to the container",
    "device": "a device mount point hands a host block device to the container",
}
DEV_WHY = "device passthrough hands a host device to the container"
LXC_WHY = "a raw LXC key acts on the host at start"
IDMAP_WHY = "a mount point's id map can give container users any host id, host root included"


@dataclass(frozen=True)
class Dropped:
    """One entry of the backed-up config that was not restored."""

    key: str
    value: str
    why: str
    option: str | None = None  # only this sub-option of the entry goes, the entry stays

    def line(self) -> str:
        if self.option is None:
            what = "'" + shown(f"{self.key}: {self.value}") + "'"
        else:
            what = "'" + shown(f"{self.option}={self.value}") + f"' of {self.key}"
        return (
            f"WARN: not restoring {what} from the archive - {self.why}; "
            f"restore with {TRUST_OPTION} to keep it"
        )


def shown(text: str, limit: int = SHOWN_LIMIT) -> str:
    """Archive text for a log line: control characters and undecodable bytes escaped, and
    cut at ``limit`` characters (a config line can be very long)."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(_escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def reaching_outside(backup: Config) -> list[Dropped]:
    """The entries of ``backup`` that act outside the container, grouped by kind."""
    values = backup.values
    found: list[Dropped] = []
    if "hookscript" in values:
        found.append(Dropped("hookscript", values["hookscript"], HOOKSCRIPT_WHY))
    for mp in backup.mountpoints():
        if mp.key != "rootfs" and mp.type in MP_WHY:
            found.append(Dropped(mp.key, values[mp.key], MP_WHY[mp.type]))
        elif "idmap" in mp.options:
            found.append(Dropped(mp.key, str(mp.options["idmap"]), IDMAP_WHY, "idmap"))
    devices = sorted((k for k in values if DEV_KEY_RE.fullmatch(k)), key=lambda k: int(k[3:]))
    found += [Dropped(key, values[key], DEV_WHY) for key in devices]
    found += [Dropped(key, value, LXC_WHY) for key, value in backup.lxc]
    return found


def drop_untrusted(backup: Config, log: Log) -> list[Dropped]:
    """Remove what reaches outside the container from ``backup``; one line per entry."""
    dropped = reaching_outside(backup)
    mountpoints = {mp.key: mp for mp in backup.mountpoints()}
    for item in dropped:
        if item.option is not None:
            mp = mountpoints[item.key].replace(**{item.option: None})
            backup.set_raw(item.key, mp.render())
        elif item.why != LXC_WHY:
            backup.delete(item.key)
        log(item.line())
    backup.lxc = []
    return dropped
