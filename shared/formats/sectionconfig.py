"""Proxmox section configs (``storage.cfg``, ``jobs.cfg``, pveam's ``sources.cfg``).

    <type>: <id>
        <key> <value>
        <flag>

Sections are separated by blank lines. Each type has a schema of its properties; parsing reports
errors per section, writing keeps the order keys were read in (new keys are appended), so a file
that was only read and written again is byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .lines import check_writable, config_lines
from .propstring import Field
from .types import Bool, FormatError, ValueType

HEADER_RE = re.compile(r"^(\S+):\s*(\S+)\s*$")
PROP_RE = re.compile(r"^\s+(\S+)(?:\s+(.*?))?\s*$")


@dataclass(frozen=True)
class SectionType:
    fields: Mapping[str, Field]
    id_type: ValueType | None = None
    # keys that may repeat: one line per item, collected into a list (Proxmox's array properties)
    arrays: frozenset[str] = frozenset()

    def parse_value(self, key: str, raw: str | None) -> Any:
        spec = self.fields.get(key)
        if spec is None:
            raise FormatError("property is not defined in schema")
        if raw is None or raw == "":
            if isinstance(spec.type, Bool):
                return True
            raise FormatError("missing value")
        return spec.type.parse(raw)

    def render_value(self, key: str, value: Any) -> str:
        spec = self.fields.get(key)
        return spec.type.render(value) if spec is not None else str(value)


@dataclass
class Section:
    type: str
    id: str
    props: dict[str, Any] = field(default_factory=dict)
    # what the parse left out of it (a value that did not parse, a line): written back, the
    # section would lose it
    problems: list[str] = field(default_factory=list, compare=False, repr=False)
    # the keys whose value did not parse, with why: a reader that must not fall back to a
    # default for one of them (a storage's retention) can tell "not set" from "unreadable"
    dropped: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SectionConfig:
    """A parsed file: ordered sections plus the warnings collected while parsing."""

    types: Mapping[str, SectionType]
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # skipped sections: id -> type
    lost: list[str] = field(default_factory=list)  # what written back it would lose (warned)

    def __iter__(self) -> Iterator[Section]:
        return iter(self.sections)

    def get(self, sid: str) -> Section | None:
        for sec in self.sections:
            if sec.id == sid:
                return sec
        return None

    def add(self, section: Section) -> None:
        if self.get(section.id) is not None:
            raise ConfigError(f"section '{section.id}' already exists")
        self.validate(section)
        self.sections.append(section)

    def remove(self, sid: str) -> Section:
        sec = self.get(sid)
        if sec is None:
            raise ConfigError(f"section '{sid}' does not exist")
        self.sections.remove(sec)
        return sec

    def validate(self, section: Section) -> None:
        stype = self.types.get(section.type)
        if stype is None:
            raise ConfigError(f"unknown section type '{section.type}'")
        if stype.id_type is not None:
            try:
                stype.id_type.parse(section.id)
            except FormatError as err:
                raise ConfigError(f"invalid ID '{section.id}': {err}") from None
        for name, spec in stype.fields.items():
            if not spec.optional and name not in section.props:
                raise ConfigError(
                    f"{section.type} '{section.id}': missing value for required option '{name}'"
                )

    def render(self) -> str:
        chunks = []
        for sec in self.sections:
            stype = self.types.get(sec.type)
            lines = [f"{sec.type}: {sec.id}"]
            for key, value in sec.props.items():
                items = value if stype and key in stype.arrays else [value]
                for item in items:
                    text = stype.render_value(key, item) if stype else str(item)
                    check_writable(key, text)
                    lines.append(f"\t{key} {text}")
            chunks.append("\n".join(lines) + "\n")
        return "\n".join(chunks)


def parse(text: str, types: Mapping[str, SectionType], *, strict: bool = False) -> SectionConfig:
    """Parse a section config. Bad lines are warnings (or :class:`ConfigError` with strict)."""
    cfg = SectionConfig(types=types)
    current: Section | None = None
    skip = False

    def problem(msg: str) -> None:
        if strict:
            raise ConfigError(msg)
        cfg.warnings.append(msg)
        cfg.lost.append(msg)
        if current is not None:
            current.problems.append(msg)

    for lineno, line in enumerate(config_lines(text), 1):
        if not line.strip():
            current, skip = None, False
            continue
        if line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current, skip = None, False
            m = HEADER_RE.match(line)
            if not m:
                problem(f"line {lineno}: ignore config line: {line}")
                continue
            stype_name, sid = m.group(1), m.group(2)
            stype = types.get(stype_name)
            if stype is None:
                problem(
                    f"line {lineno}: ignore config section '{stype_name}: {sid}' - unknown type"
                )
                cfg.unknown.setdefault(sid, stype_name)
                skip = True
                continue
            if cfg.get(sid) is not None:
                problem(f"line {lineno}: duplicate section '{sid}' ignored")
                skip = True
                continue
            current = Section(stype_name, sid)
            cfg.sections.append(current)
            continue
        if skip or current is None:
            continue
        m = PROP_RE.match(line)
        if not m:
            problem(f"line {lineno}: ignore config line: {line}")
            continue
        key, raw = m.group(1), m.group(2)
        stype = types[current.type]
        if key in current.props and key not in stype.arrays:
            problem(f"line {lineno}: duplicate attribute '{key}' in section '{current.id}'")
            continue
        try:
            value = stype.parse_value(key, raw)
            if key in stype.arrays:
                current.props.setdefault(key, []).append(value)
            else:
                current.props[key] = value
        except FormatError as err:
            problem(f"line {lineno}: {current.type} '{current.id}' - '{key}': {err}")
            current.dropped.setdefault(key, f"'{key}': {err}")
    return cfg
