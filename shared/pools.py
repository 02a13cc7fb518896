"""Resource pools, read from the ``pool:`` lines of Proxmox's ``/etc/pve/user.cfg``.

    pool:<name>:<comment>:<vmid,...>:<storage,...>:

Read-only, as ``vzdump --pool`` and a job's ``pool`` need it. Parsed as Proxmox's
parse_user_config does: an invalid pool name or VMID is skipped with a warning, a VMID already
in an earlier pool stays there, and a nested pool (``a/b``) makes its parents exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import paths
from .errors import ConfigError, NotFoundError
from .formats.lines import config_lines
from .regularfile import UnreadableFile, read_whole

MAX_SIZE = 16 << 20  # bytes; user.cfg is small, a larger file is not one
POOL_NAME_RE = re.compile(r"[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+){0,2}")

Warn = Callable[[str], None]


@dataclass
class Pools:
    """Pool name -> its member VMIDs (each VMID belongs to at most one pool)."""

    members: dict[str, set[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_pools(text: str) -> Pools:
    pools = Pools()
    owner: dict[int, str] = {}
    for raw in config_lines(text):
        data = [d.strip() for d in raw.strip().split(":")]
        if len(data) < 2 or data[0] != "pool":
            continue
        name, vmlist = data[1], data[3] if len(data) > 3 else ""
        if not POOL_NAME_RE.fullmatch(name):
            pools.warnings.append(
                f"user config - ignore pool '{name}' - invalid characters in pool name"
            )
            continue
        _add_pool(pools, name)
        for word in (w for w in re.split(r"[,;\s]+", vmlist) if w):
            _add_member(pools, owner, name, word)
    return pools


def _add_pool(pools: Pools, name: str) -> None:
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        pools.members.setdefault("/".join(parts[:depth]), set())


def _add_member(pools: Pools, owner: dict[int, str], name: str, word: str) -> None:
    if not word.isascii() or not word.isdigit():
        pools.warnings.append(f"user config - ignore invalid vmid '{word}' in pool '{name}'")
        return
    vmid = int(word)
    if vmid in owner:
        pools.warnings.append(f"user config - ignore duplicate vmid '{vmid}' in pool '{name}'")
        return
    owner[vmid] = name
    pools.members[name].add(vmid)


def read_pools() -> Pools:
    """The pools of user.cfg (none when the file is missing)."""
    path = paths.user_cfg()
    try:
        data = read_whole(path, MAX_SIZE)  # a FIFO in its place would have blocked the command
    except FileNotFoundError:
        return Pools()
    except UnreadableFile as err:
        raise ConfigError(f"'{path}' {err.reason}") from None
    except OSError as err:
        raise ConfigError(f"unable to read '{path}' - {err.strerror}") from None
    return parse_pools(data.decode("utf-8", errors="replace"))


def pool_members(name: str, warn: Warn | None = None) -> list[int]:
    """The VMIDs of pool ``name``, sorted; ``pool '<name>' does not exist`` otherwise."""
    pools = read_pools()
    if warn is not None:
        for message in pools.warnings:
            warn(message)
    if name not in pools.members:
        raise NotFoundError(f"pool '{name}' does not exist")
    return sorted(pools.members[name])
