"""The plain data the guest setup needs, built by the caller from the container config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.formats.propstring import split_list, split_parts
from shared.formats.types import FormatError, parse_bool

# Proxmox's default id map for unprivileged containers starts here (root:100000:65536).
DEFAULT_UNPRIVILEGED_ROOT = 100000
DEFAULT_TTY = 2


@dataclass
class GuestConfig:
    """What the setup reads of a container config; ``nets`` maps N of ``netN`` to its sub-keys."""

    vmid: int
    hostname: str | None = None
    ostype: str | None = None  # configured ostype, None = detect
    arch: str | None = None
    unprivileged: bool = False
    root_uid: int = 0  # host uid of the CT's root (100000 for the default unprivileged map)
    root_gid: int = 0
    nets: dict[int, dict[str, str]] = field(default_factory=dict)
    nameserver: list[str] | None = None
    searchdomain: list[str] | None = None
    timezone: str | None = None
    tty: int = DEFAULT_TTY
    cmode: str = "tty"
    features: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pct_conf(
        cls,
        vmid: int,
        conf: Mapping[str, str],
        *,
        root_uid: int | None = None,
        root_gid: int | None = None,
    ) -> GuestConfig:
        """Build from raw ``key: value`` pairs of a container config (values unparsed strings).

        Without explicit ids, an unprivileged container gets Proxmox's default map (100000).
        """
        try:
            unprivileged = parse_bool(conf.get("unprivileged", "0"))
        except FormatError as err:
            raise FormatError(f"unprivileged: {err}") from None
        default_root = DEFAULT_UNPRIVILEGED_ROOT if unprivileged else 0
        nets: dict[int, dict[str, str]] = {}
        for key, value in conf.items():
            match = re.fullmatch(r"net(\d+)", key)
            if match:
                nets[int(match.group(1))] = parse_net(value)
        tty = conf.get("tty")
        try:
            tty_count = DEFAULT_TTY if tty is None else int(tty)
        except ValueError:
            raise FormatError(f"tty: type check ('integer') failed - got '{tty}'") from None
        return cls(
            vmid=vmid,
            hostname=conf.get("hostname") or None,
            ostype=conf.get("ostype") or None,
            arch=conf.get("arch") or None,
            unprivileged=unprivileged,
            root_uid=default_root if root_uid is None else root_uid,
            root_gid=default_root if root_gid is None else root_gid,
            nets=dict(sorted(nets.items())),
            nameserver=split_list(conf["nameserver"]) if "nameserver" in conf else None,
            searchdomain=split_list(conf["searchdomain"]) if "searchdomain" in conf else None,
            timezone=conf.get("timezone") or None,
            tty=tty_count,
            cmode=conf.get("cmode", "tty"),
            features=parse_net(conf["features"]) if "features" in conf else {},
        )


def parse_net(raw: str) -> dict[str, str]:
    """A property string into its sub-keys, values kept as raw strings."""
    result: dict[str, str] = {}
    for part in split_parts(raw):
        key, sep, value = part.partition("=")
        if sep:
            result[key] = value
    return result
