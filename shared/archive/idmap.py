"""Container id maps and the ``lxc-usernsexec`` wrapper that runs tar inside them.

An entry ``(u|g, ct, host, len)`` maps container ids ``ct..ct+len-1`` to host ids
``host..host+len-1`` (the ``lxc.idmap`` line ``u 0 100000 65536``). tar run under the wrapper
sees host owner 100000 as 0, so archives of unprivileged containers hold container ids, and
extraction under the target's map shifts them back (Proxmox: vzdump §3.5, pct §4.2.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from shared.errors import ConfigError
from shared.formats.digits import ascii_int


class IdMapEntry(NamedTuple):
    kind: str  # "u" or "g"
    ct: int
    host: int
    length: int


DEFAULT_UNPRIVILEGED: tuple[IdMapEntry, ...] = (
    IdMapEntry("u", 0, 100000, 65536),
    IdMapEntry("g", 0, 100000, 65536),
)


def parse_idmap(value: str) -> IdMapEntry:
    """One ``lxc.idmap`` value: ``u 0 100000 65536``."""
    fields = value.split()
    numbers = [ascii_int(f) for f in fields[1:]]
    if len(fields) != 4 or fields[0] not in ("u", "g") or None in numbers:
        raise ConfigError(f"invalid lxc.idmap entry '{value}'")
    ct, host, length = (n or 0 for n in numbers)
    if length == 0:
        raise ConfigError(f"invalid lxc.idmap entry '{value}'")
    return IdMapEntry(fields[0], ct, host, length)


def usernsexec_argv(entries: Sequence[IdMapEntry] | None) -> list[str]:
    """``lxc-usernsexec -m u:0:100000:65536 ... --``, or nothing for a privileged container."""
    if not entries:
        return []
    argv = ["lxc-usernsexec"]
    for kind, ct, host, length in entries:
        if kind not in ("u", "g"):
            raise ConfigError(f"invalid id map kind '{kind}'")
        argv += ["-m", f"{kind}:{ct}:{host}:{length}"]
    return [*argv, "--"]


def to_host(entries: Sequence[IdMapEntry], kind: str, ct_id: int) -> int | None:
    """The host id of container id ``ct_id``, or None when it is not mapped."""
    for e_kind, ct, host, length in entries:
        if e_kind == kind and ct <= ct_id < ct + length:
            return host + ct_id - ct
    return None


def root_ids(entries: Sequence[IdMapEntry] | None) -> tuple[int, int]:
    """Host uid/gid of the container's root (0/0 for a privileged container)."""
    if not entries:
        return 0, 0
    uid, gid = to_host(entries, "u", 0), to_host(entries, "g", 0)
    if uid is None or gid is None:
        raise ConfigError("id map does not map the container's root user and group")
    return uid, gid
