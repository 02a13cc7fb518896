"""Array properties in section configs: a key that repeats, one line per item (jobs.cfg's
``exclude-path``, like Proxmox's SectionConfig arrays)."""

from __future__ import annotations

from shared.formats import sectionconfig
from shared.formats.propstring import Field
from shared.formats.sectionconfig import SectionType
from shared.formats.types import Int, Str

TYPES = {
    "job": SectionType(
        fields={"path": Field(Str()), "count": Field(Int())}, arrays=frozenset({"path"})
    )
}
TEXT = "job: a\n\tpath /x\n\tcount 2\n\tpath /y z\n"


def test_array_lines_are_collected_and_written_back_in_order() -> None:
    cfg = sectionconfig.parse(TEXT, TYPES, strict=True)
    assert cfg.sections[0].props == {"path": ["/x", "/y z"], "count": 2}
    assert cfg.render() == "job: a\n\tpath /x\n\tpath /y z\n\tcount 2\n"


def test_plain_keys_still_reject_duplicates() -> None:
    cfg = sectionconfig.parse("job: a\n\tcount 1\n\tcount 2\n", TYPES)
    assert cfg.sections[0].props == {"count": 1}
    assert cfg.warnings == ["line 3: duplicate attribute 'count' in section 'a'"]
