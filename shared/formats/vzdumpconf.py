"""``/etc/vzdump.conf``: vzdump's node-wide defaults (spec vzdump §1.3).

    # comment
    key: value

Bad lines never stop the parse: a line without a colon gives ``ignore config line: <line>``, an
unknown key or a bad value gives ``parse error in '<file>' - '<key>': <msg>`` and that key is
dropped. The option schema is passed in (vzdump owns it; shared imports nothing from vzdump).
Array options may repeat and each line is split into shell words, so
``exclude-path: /a '/b c'`` gives two entries. The words are Perl's (``Text::ParseWords``, which
Proxmox splits them with), not a POSIX shell's: in double quotes a backslash escapes any
character (``"/x/\\*"`` is ``/x/*``), and in single quotes it keeps a quote from ending them and
stays itself (``'it\\'s'`` is ``it\\'s``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import paths
from ..errors import ConfigError
from ..regularfile import UnreadableFile, read_whole
from .lines import MAX_CONFIG_FILE, config_lines
from .types import FormatError, ValueType

DISPLAY_NAME = "/etc/vzdump.conf"
UNKNOWN_KEY = (
    "property is not defined in schema and the schema does not allow additional properties"
)
LINE_RE = re.compile(r"^(\S+?):\s*(.*)$")


class OptionSpec(Protocol):
    """What the parser needs to know of one option: its value type, and whether it repeats."""

    @property
    def type(self) -> ValueType: ...

    @property
    def array(self) -> bool: ...


@dataclass
class VzdumpConf:
    """Parsed defaults (typed values; arrays as lists) plus the warnings, in file order."""

    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)  # key -> why its value was ignored


def parse(text: str, schema: Mapping[str, OptionSpec], filename: str = DISPLAY_NAME) -> VzdumpConf:
    conf = VzdumpConf()
    raw: dict[str, list[str]] = {}
    for line in config_lines(text):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE_RE.match(line)
        if not m:
            conf.warnings.append(f"ignore config line: {line}")
            continue
        raw.setdefault(m.group(1), []).append(m.group(2))
    for key, lines in raw.items():
        try:
            conf.values[key] = _parse_value(key, lines, schema)
        except FormatError as err:
            conf.warnings.append(f"parse error in '{filename}' - '{key}': {err}")
            conf.invalid[key] = str(err)
    if "storage" in conf.values and "dumpdir" in conf.values:
        del conf.values["dumpdir"]
        conf.warnings.append(
            f"both 'storage' and 'dumpdir' defined in '{filename}' - ignoring 'dumpdir'"
        )
    return conf


def _parse_value(key: str, lines: list[str], schema: Mapping[str, OptionSpec]) -> Any:
    spec = schema.get(key)
    if spec is None:
        raise FormatError(UNKNOWN_KEY)
    if spec.array:
        words: list[str] = []
        for line in lines:
            words.extend(_shell_words(line))
        return [spec.type.parse(word) for word in words]
    return spec.type.parse(lines[-1])  # a repeated plain key: the last line wins, as in Proxmox


WORD_PART_RE = re.compile(
    r'"((?:[^\\"]|\\.)*)"'  # a double-quoted part
    r"|'((?:[^\\']|\\.)*)'"  # a single-quoted one
    r"""|((?:[^\\"'\s]|\\.)+)"""  # an unquoted one
    r"|(\s+)",  # the space between two words
    re.S,
)
ESCAPED_RE = re.compile(r"\\(.)", re.S)


def _shell_words(line: str) -> list[str]:
    """The line's words as Perl's ``shellwords`` gives them (see the module text)."""
    words: list[str] = []
    word: str | None = None
    line = line.lstrip()
    pos = 0
    while pos < len(line):
        part = WORD_PART_RE.match(line, pos)
        if part is None:
            what = "a trailing backslash" if line.endswith("\\") else "no closing quotation"
            raise FormatError(f"unable to split '{line}' into words - {what}")
        pos = part.end()
        double, single, bare, space = part.groups()
        if space is not None:
            if word is not None:
                words.append(word)
            word = None
        else:
            text = single if single is not None else ESCAPED_RE.sub(r"\1", double or bare or "")
            word = (word or "") + text
    if word is not None:
        words.append(word)
    return words


def read(
    schema: Mapping[str, OptionSpec], path: Path | None = None, filename: str = DISPLAY_NAME
) -> VzdumpConf:
    """Read the file (default ``shared.paths.vzdump_conf()``); a missing file is empty."""
    path = path or paths.vzdump_conf()
    try:
        data = read_whole(path, MAX_CONFIG_FILE)  # a FIFO in its place would block every job
    except FileNotFoundError:
        return VzdumpConf()
    except UnreadableFile as err:
        raise ConfigError(f"{filename}: '{path}' {err.reason}") from None
    except OSError as err:
        raise ConfigError(f"{filename}: unable to read '{path}': {err.strerror}") from None
    return parse(data.decode("utf-8", errors="replace"), schema, filename)


__all__ = ["DISPLAY_NAME", "OptionSpec", "VzdumpConf", "parse", "read"]
