"""tar's ``--totals`` line, written the way GNU tar writes it:
``Total bytes read: 2150400 (2.1MiB, 164MiB/s)``.

The count is exact. The size and the rate in brackets are in binary units (B, KiB, MiB, ...),
rounded up, with one decimal below 10 and none from 10 on: 2,150,400 bytes (2.05 MiB) is
``2.1MiB``, 211,896,320 (202.08 MiB) is ``203MiB``, and 1,048,575 rounds up to ``1.0MiB``.
"""

from __future__ import annotations

_PREFIXES = "KMGTPEZY"


def human_size(nbytes: int) -> str:
    """``nbytes`` as GNU tar shows it in its totals (gnulib's ``human_readable`` with
    automatic binary units and its default rounding, upwards)."""
    if nbytes < 1024:
        return f"{nbytes}B"
    exponent, scale = 1, 1024
    while nbytes >= scale * 1024 and exponent < len(_PREFIXES):
        exponent, scale = exponent + 1, scale * 1024
    if nbytes < 10 * scale:
        tenths = -(-nbytes * 10 // scale)
        if tenths < 100:
            return f"{tenths // 10}.{tenths % 10}{_PREFIXES[exponent - 1]}iB"
        amount = 10
    else:
        amount = -(-nbytes // scale)
    if amount == 1024 and exponent < len(_PREFIXES):
        return f"1.0{_PREFIXES[exponent]}iB"
    return f"{amount}{_PREFIXES[exponent - 1]}iB"


def totals_line(text: str, nbytes: int, seconds: float) -> str:
    """``<text>: <nbytes> (<size>, <rate>/s)``; the rate is ``?`` when no time passed."""
    rate = human_size(int(nbytes / seconds)) if seconds > 0 else "?"
    return f"{text}: {nbytes} ({human_size(nbytes)}, {rate}/s)"
