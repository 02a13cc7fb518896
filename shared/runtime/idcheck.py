"""Check that root owns the subordinate ids an unprivileged container maps to.

With ``newuidmap``/``newgidmap`` installed, LXC insists that root's ranges are listed in
``/etc/subuid`` and ``/etc/subgid`` and otherwise fails deep inside ``lxc-start`` or
``lxc-usernsexec`` with a trace that does not name the cause. ctkit checks first and says which
line is missing and how to add it. ``CTKIT_SUBUID`` / ``CTKIT_SUBGID`` point the check at other
files (for tests; LXC itself always reads the files in ``/etc``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..archive.idmap import IdMapEntry
from ..errors import ConfigError

OWNERS = ("root", "0")


def subid_file(kind: str) -> Path:
    """``/etc/subuid`` for ``u`` entries, ``/etc/subgid`` for ``g`` entries."""
    if kind == "u":
        return Path(os.environ.get("CTKIT_SUBUID") or "/etc/subuid")
    return Path(os.environ.get("CTKIT_SUBGID") or "/etc/subgid")


def read_ranges(path: Path, owners: Sequence[str] = OWNERS) -> list[tuple[int, int]]:
    """``(start, count)`` of every ``owner:start:count`` line of ``owners`` in a subid file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in owners and fields[1].isdigit() and fields[2].isdigit():
            ranges.append((int(fields[1]), int(fields[2])))
    return ranges


def covered(start: int, count: int, ranges: Iterable[tuple[int, int]]) -> bool:
    """Whether ``start .. start+count-1`` lies within the union of ``ranges``."""
    pos, end = start, start + count
    for r_start, r_count in sorted(ranges):
        if r_start <= pos < r_start + r_count:
            pos = r_start + r_count
        if pos >= end:
            return True
    return pos >= end


def missing_line(entries: Sequence[IdMapEntry]) -> tuple[Path, str] | None:
    """The first subid file and line an id map needs but does not find, else None."""
    for entry in entries:
        path = subid_file(entry.kind)
        if not covered(entry.host, entry.length, read_ranges(path)):
            return path, f"root:{entry.host}:{entry.length}"
    return None


def check_subids(vmid: int, entries: Sequence[IdMapEntry]) -> None:
    """ConfigError naming the missing ``root:<start>:<count>`` line and how to add it."""
    missing = missing_line(entries)
    if missing is None:
        return
    path, line = missing
    raise ConfigError(
        f"{path} has no line '{line}' for the id map of CT {vmid}"
        f" - add it with: echo '{line}' >> {path}"
    )
