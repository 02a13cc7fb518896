"""Finding a template by exact file name or by prefix (the newest matching version).

An exact name is looked up in ``all`` (the last source wins). Otherwise every template name
that starts with the given text is a candidate, e.g. ``debian-12-standard`` or
``debian-12-standard_12``. The candidates must belong to one package (the part of the name
before the first ``_``); among them the ones for this host's architecture are preferred and
the newest version (Debian ordering: ``12.12-1`` > ``12.7-1``) wins.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass

from shared.errors import NotFoundError
from shared.storage.volid import TEMPLATE_EXT_RE

from .aplinfo import Appliance
from .collection import ApplianceIndex
from .versions import version_key

MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}


class NoSuchTemplate(NotFoundError):
    """``no such template``; the CLI turns it into the 400 lines. ``hint`` lists candidates."""

    def __init__(self, name: str, hint: str | None = None, *, ambiguous: bool = False) -> None:
        super().__init__("no such template", hint=hint)
        self.name = name
        self.ambiguous = ambiguous  # a prefix of several packages: the name exists, twice


@dataclass(frozen=True)
class TemplateChoice:
    appliance: Appliance
    note: str | None = None  # set when a prefix was resolved: say which template was chosen


def host_arch() -> str:
    machine = platform.machine()
    return MACHINE_ARCH.get(machine, machine)


def name_parts(template: str) -> tuple[str, str | None, str | None]:
    """(package, version, arch) from ``<package>_<version>_<arch>.<ext>``, as far as present."""
    stem = TEMPLATE_EXT_RE.sub("", template)
    parts = stem.split("_")
    package = parts[0]
    version = parts[1] if len(parts) > 1 else None
    arch = parts[2] if len(parts) > 2 else None
    return package, version, arch


def _version_of(app: Appliance) -> str:
    return name_parts(app.template)[1] or app.version


def _arch_of(app: Appliance) -> str | None:
    return app.architecture or name_parts(app.template)[2]


def find_template(index: ApplianceIndex, name: str, arch: str | None = None) -> TemplateChoice:
    """Resolve ``name``; raise :class:`NoSuchTemplate` (with a hint) when nothing matches."""
    if name in index.all:
        return TemplateChoice(index.all[name])
    candidates = [app for tpl, app in index.all.items() if name and tpl.startswith(name)]
    if not candidates:
        raise NoSuchTemplate(name, _hint(index, name))
    packages = sorted({name_parts(app.template)[0] for app in candidates})
    if len(packages) > 1:
        shown = ", ".join(packages[:8]) + (", ..." if len(packages) > 8 else "")
        raise NoSuchTemplate(name, f"'{name}' matches several packages: {shown}", ambiguous=True)
    wanted = arch or host_arch()
    native = [app for app in candidates if _arch_of(app) == wanted]
    pool = native or candidates
    best = max(pool, key=lambda app: (version_key(_version_of(app)), app.template))
    # a prefix can match templates of several sources: the one taken names its source, whose
    # key signed the index that vouches for it
    origin = f" (source '{best.source_name}')" if best.source_name else ""
    note = f"using '{best.template}', the newest template matching '{name}'{origin}"
    return TemplateChoice(best, note)


def _hint(index: ApplianceIndex, name: str) -> str | None:
    """Other versions of the same package, for a pinned name that has gone."""
    package = re.split(r"_", name, maxsplit=1)[0]
    same = sorted(t for t in index.all if name_parts(t)[0] == package)
    if not same:
        return None
    return "available: " + ", ".join(same)
