"""Decimal numbers in text from outside (servers, archives, configs, a container's files).

``str.isdigit()`` is true for digits ``int()`` refuses (superscripts: ``'²'.isdigit()``) and
for other scripts' digits, and ``int()`` refuses 4300 digits and more: a check by
``isdigit()`` followed by ``int()`` ended in a ValueError traceback on such text.
"""

from __future__ import annotations

import re

_ASCII_DIGITS = re.compile(r"[0-9]+")
# More digits than a number of any range here has: int() refuses 4300 of them (a ValueError
# its callers did not expect) and spends quadratic time on fewer; such text is refused first.
MAX_DIGITS = 64


def ascii_int(text: str, max_digits: int = 20) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits."""
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


__all__ = ["ascii_int"]
