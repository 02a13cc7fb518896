"""Writing aplinfo text that the (quirky) parser reads back to the same records.

Field order follows Proxmox's published index; Description is always last (anything after a
multi-line Description would be swallowed). Values that could not survive a round trip (line
breaks, surrounding blanks, an empty value) are refused rather than silently changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .aplinfo import Appliance

CANONICAL = {
    "package": "Package",
    "version": "Version",
    "type": "Type",
    "os": "OS",
    "section": "Section",
    "maintainer": "Maintainer",
    "architecture": "Architecture",
    "location": "Location",
    "md5sum": "md5sum",
    "sha512sum": "sha512sum",
    "infopage": "Infopage",
    "manageurl": "ManageUrl",
    "certified": "Certified",
}
KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def _check_value(key: str, value: str) -> None:
    if not value.strip() or value != value.strip() or "\n" in value or "\r" in value:
        raise ValueError(f"aplinfo field '{key}' cannot be written: {value!r}")


def _field_name(key: str) -> str:
    if key == "description" or not KEY_RE.fullmatch(key):
        raise ValueError(f"aplinfo field name '{key}' cannot be written")
    return CANONICAL.get(key) or key.capitalize()


def _description(app: Appliance) -> list[str]:
    headline = app.headline or ""
    desc = app.description
    if "\n" in headline or "\r" in headline or headline != headline.lstrip():
        raise ValueError(f"aplinfo headline cannot be written: {headline!r}")
    if desc and not headline:
        raise ValueError("aplinfo record with a long description needs a headline")
    if "\n" in desc or desc != desc.strip():
        raise ValueError(f"aplinfo description cannot be written: {desc!r}")
    lines = [f"Description: {headline}" if headline else "Description:"]
    if desc:
        lines.append(f" {desc}")
    return lines


def render_record(app: Appliance) -> str:
    """One stanza, ending in a newline; fields in canonical order, then the rest as read."""
    order = [k for k in CANONICAL if k in app.fields]
    order += [k for k in app.fields if k not in CANONICAL]
    lines = []
    for key in order:
        value = app.fields[key]
        _check_value(key, value)
        lines.append(f"{_field_name(key)}: {value}")
    lines += _description(app)
    return "\n".join(lines) + "\n"


def serialize_aplinfo(appliances: Iterable[Appliance], news: Appliance | None = None) -> str:
    """A whole index: the news record first (as Proxmox's file has it), then the stanzas."""
    records = ([news] if news is not None else []) + list(appliances)
    return "\n".join(render_record(app) for app in records)
