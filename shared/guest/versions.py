"""Version comparisons as the distro plugins need them."""

from __future__ import annotations

import re


def major_minor(version: str | None) -> tuple[int, int | None] | None:
    """``"3.13.1"`` → ``(3, 13)``, ``"12"`` → ``(12, None)``, junk → ``None``."""
    match = re.match(r"(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(2) is None else int(match.group(2))


def at_least(version: str | None, major: int, minor: int = 0) -> bool:
    parsed = major_minor(version)
    if parsed is None:
        return False
    have_major, have_minor = parsed
    if have_major != major:
        return have_major > major
    return minor <= (have_minor or 0)


def version_number(version: str | None) -> float:
    """A plain number for threshold checks (``"8.3"`` → 8.3), 0 when unparsable."""
    match = re.match(r"\d+(?:\.\d+)?", version or "")
    return float(match.group(0)) if match else 0.0
