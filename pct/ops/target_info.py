"""What a remote ctkit host says about itself (``pct migrate-target info``), read once and
checked.

The remote is another machine, so its answer is untrusted input, like an archive or an index:
it is read into typed values here and nowhere else. An answer of any other shape (a broken or
foreign program behind the remote's ``pct``, or a hostile host) is refused in one line, and
its text is made printable before any of it reaches a terminal or a log. A remote whose
protocol differs is read no further than its version: the rest of its answer may have
another shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.errors import CommandError
from shared.printable import printable

from .migrate_target import PROTOCOL, typed


class Unshaped(CommandError):
    """The remote's answer does not have the shape of a ctkit host's."""


@dataclass(frozen=True)
class TargetStorage:
    exists: bool
    type: str = ""
    content: tuple[str, ...] = ()
    active: bool = False
    avail: int = 0
    error: str = ""


@dataclass(frozen=True)
class TargetInfo:
    ctkit: str
    protocol: object
    node: str = "?"
    storages: dict[str, TargetStorage] = field(default_factory=dict)
    bridges: dict[str, bool] = field(default_factory=dict)
    vmid_free: bool | None = None

    @property
    def compatible(self) -> bool:
        return self.protocol == PROTOCOL

    def check_compatible(self) -> None:
        """Refuse a remote on another migration protocol, in one line."""
        if not self.compatible:
            raise CommandError(
                f"remote ctkit {self.ctkit} is not compatible (migration protocol "
                f"{self.protocol}, need {PROTOCOL})",
                hint="install the same ctkit version on both hosts",
            )


def parse(remote: str, text: str) -> TargetInfo:
    """The answer of remote ``remote``, or :class:`Unshaped` saying it gave none."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        data = None
    try:
        return _info(data)
    except (TypeError, ValueError, KeyError):
        raise Unshaped(f"remote '{remote}' did not answer like a ctkit host") from None


def greeting(answer: dict[str, Any]) -> TargetInfo:
    """What a migration session's first line says of the remote: its version and protocol
    (the host answered ``info`` before, but may have changed, or lie, in between)."""
    ctkit = answer.get("ctkit")
    return _versions(ctkit if isinstance(ctkit, str) else "?", answer.get("protocol"))


def _versions(ctkit: str, protocol: object) -> TargetInfo:
    shown = protocol if isinstance(protocol, int) else printable(str(protocol))
    return TargetInfo(printable(ctkit), shown)


def _info(answer: object) -> TargetInfo:
    data: dict[str, Any] = typed(answer, dict)
    ctkit = _text(data.get("ctkit", "?"))
    protocol = data.get("protocol")
    if protocol != PROTOCOL:
        return _versions(ctkit, protocol)
    free = data.get("vmid_free")
    return TargetInfo(
        ctkit=ctkit,
        protocol=protocol,
        node=_text(data["node"]),
        storages={_text(sid): _storage(st) for sid, st in typed(data["storages"], dict).items()},
        bridges={_text(b): typed(up, bool) for b, up in typed(data["bridges"], dict).items()},
        vmid_free=None if free is None else typed(free, bool),
    )


def _storage(data: object) -> TargetStorage:
    st: dict[str, Any] = typed(data, dict)
    exists = typed(st.get("exists"), bool)
    if not exists:
        return TargetStorage(exists=False)
    avail = typed(st.get("avail", 0), int)
    if avail < 0:
        raise ValueError
    return TargetStorage(
        exists=True,
        type=_text(st["type"]),
        content=tuple(_text(c) for c in typed(st.get("content", []), list)),
        active=typed(st.get("active", False), bool),
        avail=avail,
        error=_text(st.get("error", "")),
    )


def _text(value: object) -> str:
    return printable(typed(value, str))
