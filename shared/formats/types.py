"""Value types of Proxmox's JSON schema, with its error messages.

Every type parses a raw string into a canonical Python value and renders it back. Parse errors
raise :class:`FormatError` whose text is the message Proxmox prints after ``<param>: ``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .digits import MAX_DIGITS


class FormatError(ValueError):
    """A value does not match its type; the text is Proxmox's message."""


TRUE_WORDS = frozenset({"1", "on", "yes", "true"})
FALSE_WORDS = frozenset({"0", "off", "no", "false"})


def parse_bool(raw: str) -> bool:
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise FormatError(f"type check ('boolean') failed - got '{raw}'")


class ValueType:
    """Base class: ``parse`` returns the canonical value, ``render`` its canonical text.
    ``joins_repeats``: a list whose option may be given more than once on a command line, the
    values joined (Proxmox's ``-list`` formats: ``--mailto a --mailto b``)."""

    name = "string"
    joins_repeats = False

    def parse(self, raw: str) -> Any:
        return raw

    def render(self, value: Any) -> str:
        return str(value)

    def describe(self) -> str:
        return f"<{self.name}>"


@dataclass(frozen=True)
class Str(ValueType):
    pattern: str | None = None
    max_length: int | None = None
    min_length: int | None = None
    check: Callable[[str], None] | None = None
    enum: Sequence[str] | None = None
    metavar: str = "string"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.metavar

    def parse(self, raw: str) -> str:
        value = str(raw)
        if self.enum is not None and value not in self.enum:
            allowed = ", ".join(self.enum)
            raise FormatError(
                f"value '{value}' does not have a value in the enumeration '{allowed}'"
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise FormatError(f"value may only be {self.max_length} characters long")
        if self.min_length is not None and len(value) < self.min_length:
            raise FormatError(f"value must be at least {self.min_length} characters long")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise FormatError("value does not match the regex pattern")
        if self.check is not None:
            self.check(value)
        return value

    def describe(self) -> str:
        if self.enum is not None:
            return "<" + " | ".join(self.enum) + ">"
        return f"<{self.metavar}>"


def Enum(*values: str) -> Str:
    return Str(enum=tuple(values))


@dataclass(frozen=True)
class Bool(ValueType):
    name = "boolean"

    def parse(self, raw: str) -> bool:
        return parse_bool(raw)

    def render(self, value: Any) -> str:
        return "1" if value else "0"

    def describe(self) -> str:
        return "<boolean>"


@dataclass(frozen=True)
class Int(ValueType):
    minimum: int | None = None
    maximum: int | None = None
    name = "integer"

    def parse(self, raw: str) -> int:
        text = str(raw).strip()
        # ASCII digits only: int() takes '２' or '١٢' as numbers, Proxmox's check does not
        if not re.fullmatch(r"[+-]?\d+", text, re.ASCII):
            raise FormatError(f"type check ('integer') failed - got '{raw}'")
        if len(text) > MAX_DIGITS:  # out of any range: the range's own message, if it has one
            _check_range(float(text), self.minimum, self.maximum)
            raise FormatError(f"type check ('integer') failed - got {len(text)} digits")
        value = int(text)
        _check_range(value, self.minimum, self.maximum)
        return value

    def describe(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"<integer ({self.minimum} - {self.maximum})>"
        return "<integer>"


@dataclass(frozen=True)
class Number(ValueType):
    minimum: float | None = None
    maximum: float | None = None
    name = "number"

    def parse(self, raw: str) -> float:
        text = str(raw).strip()
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text, re.ASCII):
            raise FormatError(f"type check ('number') failed - got '{raw}'")
        value = float(text)
        _check_range(value, self.minimum, self.maximum)
        return value

    def render(self, value: Any) -> str:
        return format_number(float(value))


def format_number(value: float) -> str:
    """Render like Perl stringifies numbers: integers without a fraction."""
    if value == int(value):
        return str(int(value))
    return repr(value)


def _check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise FormatError(f"value must have a minimum value of {format_number(minimum)}")
    if maximum is not None and value > maximum:
        raise FormatError(f"value must have a maximum value of {format_number(maximum)}")


SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(raw: str, default_unit: str = "") -> int:
    """``4G`` → bytes. A bare number counts in ``default_unit`` (bytes if empty)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])?", str(raw).strip())
    if not m:
        raise FormatError(f"unable to parse size '{raw}'")
    unit = m.group(2) or default_unit
    scale = SIZE_UNITS.get(unit, 1)
    try:
        return int(float(m.group(1)) * scale)
    except OverflowError:  # hundreds of digits: a float of infinity
        raise FormatError(f"unable to parse size '{raw}'") from None


def format_size(nbytes: int) -> str:
    """Proxmox's canonical size: the largest exact unit (0 prints as ``0T``), else bytes."""
    if nbytes == 0:
        return "0T"
    for unit in ("T", "G", "M", "K"):
        scale = SIZE_UNITS[unit]
        if nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return str(nbytes)


@dataclass(frozen=True)
class Size(ValueType):
    """A disk size in bytes, written ``<n>[KMGT]``."""

    name = "disk-size"

    def parse(self, raw: str) -> int:
        return parse_size(raw)

    def render(self, value: Any) -> str:
        return format_size(int(value))

    def describe(self) -> str:
        return "<DiskSize>"


@dataclass(frozen=True)
class ListOf(ValueType):
    """A list with items separated by any of ``split`` and re-joined with ``join``."""

    item: ValueType = field(default_factory=Str)
    split: str = r"[,;\s]+"
    join: str = ","
    name = "list"
    joins_repeats = True

    def parse(self, raw: str) -> list[Any]:
        items = [p for p in re.split(self.split, str(raw).strip()) if p != ""]
        return [self.item.parse(p) for p in items]

    def render(self, value: Any) -> str:
        return self.join.join(self.item.render(v) for v in value)


# --- formats (Proxmox "format" names) -----------------------------------------------------

STORAGE_ID_RE = r"[a-z][a-z0-9\-_.]*[a-z0-9]"


def check_storage_id(value: str) -> None:
    if len(value) < 2:
        raise FormatError(
            f"invalid format - storage ID '{value}' cannot be shorter than 2 characters"
        )
    if not re.fullmatch(STORAGE_ID_RE, value, re.IGNORECASE | re.ASCII):
        raise FormatError(f"invalid format - storage ID '{value}' contains illegal characters")


StorageId = Str(check=check_storage_id, metavar="storage ID")


def check_configid(value: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_-]+", value, re.IGNORECASE | re.ASCII):
        raise FormatError(f"invalid format - invalid configuration ID '{value}'")


ConfigId = Str(check=check_configid, max_length=40, metavar="configid")


DNS_LABEL = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
DNS_NAME = rf"{DNS_LABEL}(?:\.{DNS_LABEL})*"


def check_dns_name(value: str) -> None:
    if not re.fullmatch(DNS_NAME, value):
        raise FormatError("invalid format - value does not look like a valid DNS name")


DnsName = Str(check=check_dns_name, max_length=255, metavar="dns-name")


def check_ipv4(value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise FormatError(
            "invalid format - value does not look like a valid IPv4 address"
        ) from None


def check_ipv6(value: str) -> None:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        raise FormatError(
            "invalid format - value does not look like a valid IPv6 address"
        ) from None


VMID = Int(minimum=100, maximum=999_999_999)


def parse_vmid(raw: str) -> int:
    text = str(raw).strip()
    if not re.fullmatch(r"[1-9][0-9]{2,8}", text):
        raise FormatError(
            f"type check ('integer') failed - got '{raw}'"
            if not text.isdigit()
            else "invalid format - value does not look like a valid VM ID"
        )
    return int(text)
