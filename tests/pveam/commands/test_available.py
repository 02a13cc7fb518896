"""``pveam available`` through the console script (acceptance tests 6, 10, 20-22, 37)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index import sources
from shared import paths
from shared.errors import NotFoundError, ParamError
from tests.index.conftest import index_text, stanza
from tests.pveam.conftest import Pveam, add_source, store_index

GOLDEN = Path(__file__).parent / "golden"
LONG = "a-very-long-template-name-that-is-longer-than-sixty-characters"


@pytest.fixture
def stored(pveam: Pveam, no_sources: Path) -> Pveam:
    """Source ``a`` (system, mail, an unknown section, no arch) and ``b`` (turnkeylinux)."""
    add_source("a", "http://a.example.org/images")
    add_source("b", "http://b.example.org")
    legacy = stanza("legacy", location="", arch="", section="")
    for line in ("Architecture: \n", "Location: \n", "Section: \n"):
        legacy = legacy.replace(line, "")
    store_index(
        "a",
        index_text(
            stanza("almalinux-9-default", "20240911"),
            stanza("almalinux-10-default", "20250930"),
            stanza("Zeta", "1"),
            stanza("pmg", "8.2-1", section="mail"),
            stanza("alpine-3.22-default", "20250617", os="alpine-3.22", arch="arm64"),
            legacy,
            stanza(LONG, "1"),
        ),
    )
    store_index("b", stanza("turnkey-core", "18.0-1", section="turnkeylinux", os="debian-12"))
    return pveam


def test_sorted_and_formatted_byte_for_byte(stored: Pveam) -> None:  # tests 20, 21
    res = stored("available")
    assert (res.code, res.err) == (0, "")
    assert res.out == (GOLDEN / "available.txt").read_text()
    for line in res.out.splitlines():
        section, template, arch = line.split()
        assert line.startswith(f"{section:<15} {template:<60} ")  # HEAD format
        assert line.endswith(f" {arch}") and arch in ("amd64", "arm64", "unknown")
    long_line = next(ln for ln in res.out.splitlines() if LONG in ln)
    assert f"{LONG}_1_amd64.tar.zst amd64" in long_line  # not truncated, one space


def test_section_filter_one_dash_and_prefix(stored: Pveam) -> None:  # tests 20, 37
    mail = stored("available", "--section", "mail")
    assert mail.out == "mail            pmg_8.2-1_amd64.tar.zst" + " " * 37 + " amd64\n"
    system = stored("available", "--section", "system").out
    assert system and all(ln.startswith("system          ") for ln in system.splitlines())
    assert stored("av", "-section", "system").out == system
    assert stored("avail", "-section=system").out == system
    assert stored("a", "--section", "turnkeylinux").out.split() == [
        "turnkeylinux",
        "turnkey-core_18.0-1_amd64.tar.zst",
        "amd64",
    ]


def test_unknown_section_is_a_parameter_error(stored: Pveam) -> None:  # test 20
    res = stored("available", "-section", "foo")
    assert (res.code, res.out) == (ParamError.exit_code, "")
    assert res.err == (
        "\n400 Parameter verification failed.\n"
        "section: value 'foo' does not have a value in the enumeration "
        "'system, mail, turnkeylinux, unknown'\n"
        "pveam available  [OPTIONS]\n"
    )
    # a section that only a configured source provides is accepted
    assert stored("available", "--section", "unknown").out.split()[1] == (
        "debian-12-legacy_1.0-1_i386.tar.gz"
    )


def test_os_filter(stored: Pveam) -> None:
    res = stored("available", "--os", "alpine-3.22")
    assert res.out.split() == ["system", "alpine-3.22-default_20250617_arm64.tar.zst", "arm64"]
    assert stored("available", "--os", "nope").out == ""


def test_json_outputs(stored: Pveam) -> None:
    res = stored("available", "--section", "mail", "--output-format", "json")
    assert res.code == 0 and "\n" not in res.out.rstrip("\n")
    (rec,) = json.loads(res.out)
    assert (rec["template"], rec["section"], rec["architecture"]) == (
        "pmg_8.2-1_amd64.tar.zst",
        "mail",
        "amd64",
    )
    assert rec["url"] == "http://a.example.org/images/mail/pmg_8.2-1_amd64.tar.zst"
    assert (rec["source_name"], rec["os"], rec["version"]) == ("a", "debian-12", "8.2-1")
    pretty = stored("available", "-output-format", "json-pretty")
    records = json.loads(pretty.out)
    assert pretty.out.startswith("[\n  {")
    text_templates = [ln.split()[1] for ln in stored("available").out.splitlines()]
    assert [r["template"] for r in records] == text_templates


def test_no_stored_index(pveam: Pveam, no_sources: Path) -> None:  # test 22
    # upstream exits 0 here; ctkit fails (not found) and says to run 'pveam update'
    add_source("a", "http://a.example.org")
    add_source("b", "http://b.example.org")
    res = pveam("available")
    directory = paths.aplinfo_dir()
    assert (res.code, res.out) == (NotFoundError.exit_code, "")
    assert res.err == (
        f"unable to open file '{directory}/a' - No such file or directory\n"
        f"unable to open file '{directory}/b' - No such file or directory\n"
        "no stored index for sources a, b\n"
        "hint: run 'pveam update' first\n"
    )
    # one source updated, one not: what there is is listed, and the exit still says so
    store_index("a", index_text(stanza("first")))
    res = pveam("available")
    assert res.code == NotFoundError.exit_code
    assert [ln.split()[1] for ln in res.out.splitlines()] == ["first_1.0-1_amd64.tar.zst"]
    assert res.err.endswith("no stored index for source b\nhint: run 'pveam update' first\n")
    # no source at all is not an error: nothing to list
    sources.remove_source("a")
    sources.remove_source("b")
    res = pveam("available")
    assert (res.code, res.out, res.err) == (0, "", "")


def test_bad_records_are_skipped_with_a_warning(pveam: Pveam, no_sources: Path) -> None:
    # tests 6 and 10: a stored index is read leniently
    add_source("a", "http://a.example.org")
    incomplete = stanza("broken").replace("Infopage: https://example.org/\n", "")
    lz4 = stanza("lz", location="http://m/x/lz_1_amd64.tar.lz4")
    store_index("a", index_text(stanza("first"), incomplete, lz4, stanza("last")))
    res = pveam("available")
    assert res.code == 0
    assert [ln.split()[1] for ln in res.out.splitlines()] == [
        "first_1.0-1_amd64.tar.zst",
        "last_1.0-1_amd64.tar.zst",
    ]
    assert res.err == (
        "found incomplete appliance records\n"
        "skipping appliance record 'lz': unsupported template location "
        "'http://m/x/lz_1_amd64.tar.lz4'\n"
    )
