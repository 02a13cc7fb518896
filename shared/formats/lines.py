"""The lines of a config file, split as Proxmox splits them: at ``\\n`` only.

``str.splitlines()`` also breaks at ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, ``\\x85``,
U+2028 and U+2029. A writer that refuses only ``\\n`` in a value then lets one of those make
the rest of the value a line, and a key, of its own when the file is read back (a ``script``
for a backup job, run as root). The writers refuse every control and line-break character.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.errors import ConfigError
from shared.printable import printable
from shared.regularfile import UnreadableFile, read_whole

_UNWRITABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def config_lines(text: str) -> list[str]:
    """The lines of ``text``; a CR before the LF (a file saved with CRLF) is dropped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def check_writable(key: str, text: str) -> None:
    """A value goes on one line, as it was given, or not at all."""
    if _UNWRITABLE.search(text):
        raise ConfigError(f"value of '{key}' contains a line break or control character")


MAX_CONFIG_FILE = 8 << 20  # Proxmox's cluster file system holds files of 1 MiB at most


def read_config_text(path: Path, name: str) -> str:
    """The text of a config file a person edits (``name``: how messages call it). A byte that
    is not UTF-8 (a comment saved in Latin-1), a directory or FIFO in its place, or a file of
    more than 8 MiB is one ConfigError naming the file (and the line): each ended the commands
    that read it with a traceback, or, a FIFO, hung them. A missing file raises
    FileNotFoundError, as ``read_text`` does."""
    try:
        data = read_whole(path, MAX_CONFIG_FILE)
    except FileNotFoundError:
        raise
    except UnreadableFile as err:
        raise ConfigError(f"{name}: '{path}' {err.reason}") from None
    except OSError as err:
        raise ConfigError(f"{name}: unable to read '{path}': {err.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        line = data.split(b"\n")[lineno - 1].decode("utf-8", "backslashreplace")
        raise ConfigError(
            f"{name}: line {lineno} is not valid UTF-8: {printable(line)}",
            hint=f"{name} is UTF-8 text: fix or remove that line",
        ) from None


__all__ = ["check_writable", "config_lines", "read_config_text"]
