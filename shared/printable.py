"""Text from a container (its files, its names, its log lines) shown on the host: control and
line-break characters escaped, so that none of it can move the cursor, retitle or clear a
terminal, or forge a line of a log or a mail."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {
    code: f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    for code in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def printable(text: str) -> str:
    r"""``text`` with every control character written as ``\xNN`` (or ``\uNNNN``; tab kept).
    One table lookup a character where there is any: a call a character took 20 ms for a
    64 KiB line of them (a hook's output, say), 1.6 ms now."""
    return text.translate(_ESCAPES) if _UNPRINTABLE.search(text) else text


def utf8_text(text: str) -> str:
    r"""``text`` that encodes as UTF-8: a character a name that was not UTF-8 left (Python's
    surrogate escapes of its bytes) is written as ``\udcNN`` (a valid escape in JSON too)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


__all__ = ["printable", "utf8_text"]
