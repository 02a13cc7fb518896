"""Small rendering helpers shared by the pveam commands (tables, times, stderr lines)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def say(message: str) -> None:
    """A line of task output: flushed at once, so it shows live even through a pipe."""
    print(message, flush=True)


def utc_time(ts: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "-" if ts is None else time.strftime(fmt, time.gmtime(ts))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
