"""``available``: stored indexes merged, sorted and formatted (acceptance tests 6, 20-22)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index import store
from index.available import available, format_line, format_lines, load, to_json
from index.sources import DEFAULT_SOURCES, Source
from shared import paths
from shared.errors import ParamError
from tests.index.conftest import index_text, stanza

GOLDEN = Path(__file__).parent / "golden"
FPR = ("AB" * 20,)
SRC_A = Source("a", "http://a.example.org/images", "aplinfo.dat", FPR)
SRC_B = Source("b", "http://b.example.org", "aplinfo.dat", FPR)


def store_index(name: str, text: str) -> None:
    paths.aplinfo_dir().mkdir(parents=True, exist_ok=True)
    store.index_path(name).write_text(text)


@pytest.fixture
def two_sources(ctroot: Path) -> list[Source]:
    store_index(
        "a",
        index_text(
            stanza("almalinux-9-default", "20240911"),
            stanza("almalinux-10-default", "20250930"),
            stanza("Zeta", "1"),
            stanza("pmg", "8.2-1", section="mail"),
            stanza("legacy", location="", arch="", section=""),
            stanza("a-very-long-template-name-that-is-longer-than-sixty-characters", "1"),
        )
        .replace("Architecture: \n", "")
        .replace("Location: \n", "")
        .replace("Section: \n", ""),
    )
    store_index("b", index_text(stanza("turnkey-core", "18.0-1", section="turnkeylinux")))
    return [SRC_A, SRC_B]


def test_sorted_by_section_then_template(two_sources: list[Source]) -> None:  # test 20
    apps = available(index=load(two_sources))
    assert [(a.section, a.template) for a in apps] == [
        ("mail", "pmg_8.2-1_amd64.tar.zst"),
        ("system", "Zeta_1_amd64.tar.zst"),
        (
            "system",
            "a-very-long-template-name-that-is-longer-than-sixty-characters_1_amd64.tar.zst",
        ),
        ("system", "almalinux-10-default_20250930_amd64.tar.zst"),
        ("system", "almalinux-9-default_20240911_amd64.tar.zst"),
        ("turnkeylinux", "turnkey-core_18.0-1_amd64.tar.zst"),
        ("unknown", "debian-12-legacy_1.0-1_i386.tar.gz"),
    ]


def test_section_filter_and_enumeration(two_sources: list[Source]) -> None:  # test 20
    index = load(two_sources)
    assert [a.template for a in available("mail", index=index)] == ["pmg_8.2-1_amd64.tar.zst"]
    with pytest.raises(ParamError) as exc:
        available("foo", index=load([SRC_B]))
    assert exc.value.lines() == [
        "",
        "400 Parameter verification failed.",
        "section: value 'foo' does not have a value in the enumeration "
        "'system, mail, turnkeylinux'",
    ]
    # Sections that only a configured source provides may be chosen too.
    assert [a.section for a in available("unknown", index=index)] == ["unknown"]


def test_os_filter(two_sources: list[Source]) -> None:
    assert available(os="alpine", index=load(two_sources)) == []
    assert len(available(os="debian-12", index=load(two_sources))) == 7


def test_line_format_golden(two_sources: list[Source]) -> None:  # test 21
    apps = available(index=load(two_sources))
    text = format_lines(apps)
    assert text == (GOLDEN / "available.txt").read_text()
    for line, app in zip(text.splitlines(), apps, strict=True):
        assert line.split()[1] == app.template
    assert format_line(apps[1]) == "system          " + "Zeta_1_amd64.tar.zst".ljust(60) + " amd64"
    assert format_lines(apps).splitlines()[-1].endswith(" unknown")


def test_index_text_never_writes_control_characters_or_moves_a_column(ctroot: Path) -> None:
    """A signed index's section 'my system' made the template column 3 for awk; its escape
    sequences in a skipped record's name reached the terminal raw."""
    odd = stanza("odd").replace("Section: system", "Section: my system")
    evil = stanza("evil").replace("Package: evil", "Package: evil\x1b]0;TITLE\x07\x1b[2J")
    evil = evil.replace(".tar.zst", ".tar.lz4")  # a location ctkit skips, with a warning
    store_index("a", index_text(odd, evil))
    warnings: list[str] = []
    apps = available(index=load([SRC_A], warn=warnings.append))
    (line,) = format_lines(apps).splitlines()
    assert line.split()[1] == "odd_1.0-1_amd64.tar.zst" and line.startswith("my\\x20system")
    assert warnings and all("\x1b" not in w and "\x07" not in w for w in warnings), warnings
    assert "evil\\x1b]0;TITLE\\x07" in warnings[0]


def test_no_stored_index(ctroot: Path) -> None:  # test 22
    warnings: list[str] = []
    assert available(index=load(list(DEFAULT_SOURCES), warn=warnings.append)) == []
    assert warnings == [
        f"unable to open file '{paths.aplinfo_dir()}/proxmox' - No such file or directory",
        f"unable to open file '{paths.aplinfo_dir()}/turnkey' - No such file or directory",
    ]


def test_stored_bad_record_is_skipped_with_a_warning(ctroot: Path) -> None:  # test 6
    bad = stanza("broken").replace("Infopage: https://example.org/\n", "")
    store_index("a", index_text(stanza("ok"), bad))
    warnings: list[str] = []
    apps = available(index=load([SRC_A], warn=warnings.append))
    assert [a.template for a in apps] == ["ok_1.0-1_amd64.tar.zst"]
    assert warnings == ["found incomplete appliance records"]


def test_disabled_source_is_not_read(ctroot: Path) -> None:
    store_index("a", stanza("x"))
    off = Source("a", SRC_A.url, "aplinfo.dat", FPR, enabled=False)
    assert available(index=load([off])) == []


def test_json_form(two_sources: list[Source]) -> None:
    apps = available("turnkeylinux", index=load(two_sources))
    (entry,) = json.loads(json.dumps(to_json(apps)))
    assert entry["template"] == "turnkey-core_18.0-1_amd64.tar.zst"
    assert entry["url"] == "http://b.example.org/turnkeylinux/turnkey-core_18.0-1_amd64.tar.zst"
    assert entry["source_name"] == "b" and entry["architecture"] == "amd64"
    assert entry["fields"]["infopage"] == "https://example.org/"
    assert {"package", "version", "os", "type", "headline", "description", "sha512sum"} <= set(
        entry
    )
