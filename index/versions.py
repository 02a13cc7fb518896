"""Debian version comparison (dpkg's ``verrevcmp``), so ``12.12-1`` sorts after ``12.7-1``."""

from __future__ import annotations

import functools
import string

DIGITS = frozenset(string.digits)
LETTERS = frozenset(string.ascii_letters)


def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch in LETTERS:
        return ord(ch)
    return ord(ch) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and a[i] not in DIGITS) or (j < len(b) and b[j] not in DIGITS):
            ac = _order(a[i]) if i < len(a) and a[i] not in DIGITS else 0
            bc = _order(b[j]) if j < len(b) and b[j] not in DIGITS else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i] in DIGITS and j < len(b) and b[j] in DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i] in DIGITS:
            return 1
        if j < len(b) and b[j] in DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return (int(epoch) if epoch.isdecimal() else 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0 or >0 as ``a`` is older than, equal to or newer than ``b``."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


version_key = functools.cmp_to_key(compare_versions)
