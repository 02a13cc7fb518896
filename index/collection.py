"""The merged view of every source: one map per section plus ``all``, keyed by template name.

Sources are merged in order and records in file order; a later record with the same template
name replaces the earlier one in ``all`` and in its own section (so the later source wins for
download). If two sections hold the same name, both sections keep their entry.
``pve-web-news`` is kept apart and appears in no section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .aplinfo import Appliance, ParseResult


@dataclass
class ApplianceIndex:
    sections: dict[str, dict[str, Appliance]] = field(default_factory=dict)
    all: dict[str, Appliance] = field(default_factory=dict)
    news: Appliance | None = None
    warnings: list[str] = field(default_factory=list)

    def add(self, app: Appliance) -> None:
        self.sections.setdefault(app.section, {})[app.template] = app
        self.all[app.template] = app

    def merge(self, result: ParseResult) -> None:
        for app in result.appliances:
            self.add(app)
        if result.news is not None:
            self.news = result.news
        self.warnings.extend(result.warnings)

    def section_names(self) -> list[str]:
        return sorted(self.sections)

    def __len__(self) -> int:
        return len(self.all)
