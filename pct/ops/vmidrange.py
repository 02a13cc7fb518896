"""The VMID range ``pct restore-test`` takes its throwaway containers' ids from.

Apart from :mod:`pct.ops.restoretest` so that the command's help (which shows the default)
does not load the restore machinery.
"""

from __future__ import annotations

from shared.errors import CtkitError

DEFAULT_RANGE = (990_000_000, 999_999_999)


def parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 100 <= int(low) <= int(high):
        raise CtkitError(f"invalid VMID range '{text}' (expected <first>-<last>, from 100)")
    return int(low), int(high)
