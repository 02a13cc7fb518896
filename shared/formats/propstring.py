"""Property strings: ``[default=]v,key=value,...`` values such as ``mp0`` or ``net0``.

Parsing validates every key against a :class:`PropSchema`; printing is canonical (Proxmox's
``print_property_string``): the default key first without ``key=``, then the required keys, then
the optional ones, each group alphabetically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .types import FormatError, Str, ValueType


@dataclass(frozen=True)
class Field:
    type: ValueType = field(default_factory=Str)
    optional: bool = True
    default_key: bool = False
    description: str = ""


class PropertyStringError(FormatError):
    """``invalid format - format error`` with one message per offending sub-key."""

    def __init__(self, details: Mapping[str, str]) -> None:
        super().__init__("invalid format - format error")
        self.details = dict(details)


@dataclass(frozen=True)
class PropSchema:
    fields: Mapping[str, Field]

    @property
    def default_key(self) -> str | None:
        for name, f in self.fields.items():
            if f.default_key:
                return name
        return None

    def parse(self, raw: str, *, lenient: bool = False) -> dict[str, Any]:
        """Parse ``raw`` into ``{key: value}``; ``lenient`` keeps unknown keys as strings."""
        result: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for part in split_parts(raw):
            key, value = self._split_key(part)
            if key is None:
                errors["__default__"] = (
                    "value without key, but schema does not define a default key"
                )
                continue
            if key in result:
                raise FormatError(f"duplicate key in comma-separated list property: {key}")
            spec = self.fields.get(key)
            if spec is None:
                if lenient:
                    result[key] = value
                else:
                    errors[key] = (
                        "property is not defined in schema and the schema does not allow "
                        "additional properties"
                    )
                continue
            try:
                result[key] = spec.type.parse(value)
            except FormatError as err:
                errors[key] = str(err)
        for name, spec in self.fields.items():
            if not spec.optional and name not in result and name not in errors:
                errors[name] = "property is missing and it is not optional"
        if errors and not lenient:
            raise PropertyStringError(errors)
        return result

    def _split_key(self, part: str) -> tuple[str | None, str]:
        if "=" in part:
            key, value = part.split("=", 1)
            if key in self.fields or not self.default_key:
                return key, value
            # "local:100/x=y" style values are still the default key's value
            if key.replace("-", "").replace("_", "").isalnum():
                return key, value
        return self.default_key, part

    def render(self, data: Mapping[str, Any]) -> str:
        parts: list[str] = []
        default = self.default_key
        done: set[str] = set()
        if default is not None and data.get(default) is not None:
            parts.append(self._render_value(default, data[default]))
            done.add(default)
        required = [k for k in sorted(data) if k in self.fields and not self.fields[k].optional]
        rest = [k for k in sorted(data) if k not in required]
        for key in required + rest:
            if key in done or data[key] is None:
                continue
            parts.append(f"{key}={self._render_value(key, data[key])}")
        return ",".join(parts)

    def _render_value(self, key: str, value: Any) -> str:
        spec = self.fields.get(key)
        if spec is None or (isinstance(value, str) and not isinstance(spec.type, Str)):
            text = str(value)
        else:
            text = spec.type.render(value)
        # a comma would end the value when it is read back (and start other keys): quoted,
        # as the parser reads quotes; a quote itself cannot be written back at all
        if '"' in text:
            raise FormatError(f"value of '{key}' may not contain '\"'")
        return f'"{text}"' if "," in text else text

    def describe(self) -> str:
        items: list[str] = []
        for name, spec in self.fields.items():
            text = spec.type.describe() if spec.default_key else f"{name}={spec.type.describe()}"
            items.append(text if not spec.optional else f"[{text}]")
        return ",".join(items)


def split_list(text: str) -> list[str]:
    """Proxmox's ``split_list``: NUL-separated if it contains a NUL, else `,`/`;`/blank."""
    if "\0" in text:
        return text.split("\0")
    return [p for p in re.split(r"[,;\s]+", text.strip(), flags=re.ASCII) if p]


def split_parts(raw: str) -> Iterable[str]:
    """Split on commas, honouring double-quoted values (``key="a,b"``)."""
    part: list[str] = []
    quoted = False
    for ch in str(raw):
        if ch == '"':
            quoted = not quoted
            continue
        if ch == "," and not quoted:
            if part:
                yield "".join(part)
            part = []
            continue
        part.append(ch)
    if part:
        yield "".join(part)
