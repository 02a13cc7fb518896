"""``pveam available``: the merged stored indexes as sorted lines or JSON.

Order: section names in code-point order (news is in no section), then template names in
code-point order. ctkit prints HEAD's line format (pve-manager 9.2.7+): section padded to 15,
a space, template padded to 60, a space, the architecture or ``unknown``; the template stays
whitespace field 2 as in every older release.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from shared.errors import ParamError
from shared.printable import printable

from . import store
from .aplinfo import Appliance
from .collection import ApplianceIndex
from .sources import Source, enabled_sources

SECTIONS = ("system", "mail", "turnkeylinux")


def section_choices(index: ApplianceIndex | None = None) -> list[str]:
    """Upstream's enumeration, plus any other section the configured sources provide."""
    extra = sorted(s for s in (index.sections if index else {}) if s not in SECTIONS)
    return [*SECTIONS, *extra]


def check_section(value: str, index: ApplianceIndex | None = None) -> str:
    choices = section_choices(index)
    if value not in choices:
        allowed = ", ".join(choices)
        msg = f"value '{value}' does not have a value in the enumeration '{allowed}'"
        raise ParamError({"section": msg})
    return value


def load(sources: Sequence[Source] | None = None, warn: store.Warn | None = None) -> ApplianceIndex:
    """The merged index of the stored files (lenient; no network)."""
    return store.load_index(enabled_sources() if sources is None else sources, warn=warn)


def missing_indexes(sources: Sequence[Source] | None = None) -> list[str]:
    """The enabled sources that have no stored index yet (never updated)."""
    sources = enabled_sources() if sources is None else sources
    return [s.name for s in sources if s.enabled and not store.index_path(s.name).is_file()]


def available(
    section: str | None = None,
    os: str | None = None,
    *,
    index: ApplianceIndex | None = None,
    warn: store.Warn | None = None,
) -> list[Appliance]:
    """The records to list, sorted; ``section``/``os`` filter (the section is validated)."""
    index = index if index is not None else load(warn=warn)
    if section is not None:
        check_section(section, index)
    out = []
    for name in index.section_names():
        if section is not None and name != section:
            continue
        entries = index.sections[name]
        for template in sorted(entries):
            app = entries[template]
            if os is None or app.os == os:
                out.append(app)
    return out


_SPACE = re.compile(r"\s")


def format_line(app: Appliance) -> str:
    # the fields come from an index: none of them gets to write control characters, and a
    # space in a section would make the template a column later for awk and cut
    arch = _one_field(app.architecture or "unknown")
    return f"{_one_field(app.section):<15} {printable(app.template):<60} {arch}"


def _one_field(text: str) -> str:
    return _SPACE.sub(lambda m: f"\\x{ord(m.group()):02x}", printable(text))


def format_lines(apps: Sequence[Appliance]) -> str:
    return "".join(format_line(app) + "\n" for app in apps)


def to_json(apps: Sequence[Appliance]) -> list[dict[str, Any]]:
    return [app.to_dict() for app in apps]
