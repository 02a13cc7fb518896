"""The lines of a config file, split as Proxmox splits them: at ``\\n`` only.

``str.splitlines()`` also breaks at ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, ``\\x85``,
U+2028 and U+2029. A writer that refuses only ``\\n`` in a value then lets one of those make
the rest of the value a line, and a key, of its own when the file is read back (a ``script``
for a backup job, run as root). The writers refuse every control and line-break character.
"""

from __future__ import annotations

import re

from shared.errors import ConfigError

_UNWRITABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def config_lines(text: str) -> list[str]:
    """The lines of ``text``; a CR before the LF (a file saved with CRLF) is dropped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def check_writable(key: str, text: str) -> None:
    """A value goes on one line, as it was given, or not at all."""
    if _UNWRITABLE.search(text):
        raise ConfigError(f"value of '{key}' contains a line break or control character")


__all__ = ["check_writable", "config_lines"]
