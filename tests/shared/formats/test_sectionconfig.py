from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.formats import sectionconfig as sc
from shared.formats.propstring import Field
from shared.formats.types import Bool, ListOf, StorageId, Str

TYPES = {
    "dir": sc.SectionType(
        {
            "path": Field(Str(), optional=False),
            "content": Field(ListOf(Str())),
            "disable": Field(Bool()),
        },
        id_type=StorageId,
    ),
}

TEXT = """dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

dir: big
\tcontent rootdir
\tpath /srv/big
\tdisable
"""


def test_parse_and_round_trip() -> None:
    cfg = sc.parse(TEXT, TYPES)
    assert [s.id for s in cfg] == ["local", "big"]
    assert cfg.get("local") is not None
    assert cfg.sections[0].props["content"] == ["iso", "vztmpl", "backup"]
    assert cfg.sections[1].props["disable"] is True
    assert cfg.warnings == []
    assert cfg.render() == TEXT.replace("\tdisable\n", "\tdisable 1\n")


@pytest.mark.parametrize("brk", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_a_value_never_becomes_a_line_of_its_own(brk: str) -> None:
    """Lines are split at LF only (as Proxmox does): a value holding another line break read
    back as a second key (a backup job's 'script', run as root). Writing such a value fails."""
    cfg = sc.parse(f"dir: local\n\tpath /srv/a{brk}\tdisable 1\n", TYPES)
    assert cfg.sections[0].props["path"] == f"/srv/a{brk}\tdisable 1"
    assert "disable" not in cfg.sections[0].props
    with pytest.raises(ConfigError, match=r"^value of 'path' contains a line break or control"):
        cfg.render()


def test_crlf_files_read_as_lf_files() -> None:
    assert sc.parse(TEXT.replace("\n", "\r\n"), TYPES).render() == sc.parse(TEXT, TYPES).render()


def test_bad_lines_are_warnings_or_errors() -> None:
    text = (
        "dir: a1\n\tpath /x\n\tbogus 1\n\n"
        "foo: b1\n\tpath /y\n\n"
        "dir: c1\n\tdisable maybe\n\tpath /z\n"
    )
    cfg = sc.parse(text, TYPES)
    assert [s.id for s in cfg] == ["a1", "c1"]
    assert any("'bogus'" in w for w in cfg.warnings)
    assert any("unknown type" in w for w in cfg.warnings)
    assert any("type check ('boolean') failed - got 'maybe'" in w for w in cfg.warnings)
    with pytest.raises(ConfigError):
        sc.parse(text, TYPES, strict=True)


def test_validate_required_and_id() -> None:
    cfg = sc.parse("", TYPES)
    with pytest.raises(ConfigError, match="missing value for required option 'path'"):
        cfg.add(sc.Section("dir", "x2"))
    with pytest.raises(ConfigError, match="cannot be shorter than 2"):
        cfg.add(sc.Section("dir", "x", {"path": "/"}))
    cfg.add(sc.Section("dir", "ok", {"path": "/"}))
    with pytest.raises(ConfigError, match="already exists"):
        cfg.add(sc.Section("dir", "ok", {"path": "/"}))


def test_header_without_blank_line_starts_new_section() -> None:
    cfg = sc.parse("dir: a1\n\tpath /a\ndir: b1\n\tpath /b\n", TYPES)
    assert [s.id for s in cfg] == ["a1", "b1"]
