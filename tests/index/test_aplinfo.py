"""aplinfo parsing (spec 1.2-1.5, 7; acceptance tests 1-10) and writing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from index.aplinfo import AplinfoError, Appliance, is_template_name, parse_aplinfo
from index.aplwriter import render_record, serialize_aplinfo
from index.collection import ApplianceIndex
from tests.conftest import reference_file
from tests.index.conftest import index_text, stanza

BASE = "http://h/images"
GOLDEN = Path(__file__).parent / "golden"


def strict(text: str, base: str = BASE) -> list[Appliance]:
    return parse_aplinfo(text, base, strict=True).appliances


def lenient(text: str) -> tuple[list[Appliance], list[str]]:
    res = parse_aplinfo(text, BASE, strict=False)
    return res.appliances, res.warnings


def record(*lines: str) -> str:
    return "\n".join(lines) + "\n"


BASIC = (
    "Package: x",
    "Version: 1-1",
    "Type: lxc",
    "OS: debian-12",
    "Infopage: https://example.org",
)


def test_reference_index_parses_to_25_templates() -> None:  # acceptance test 1
    text = reference_file("aplinfo-pve-9.dat").read_text()
    result = parse_aplinfo(text, "http://download.proxmox.com/images", strict=True)
    index = ApplianceIndex()
    index.merge(result)
    assert len(result.appliances) == 25 and len(index.all) == 25
    assert {s: len(m) for s, m in index.sections.items()} == {"system": 23, "mail": 2}
    assert result.news is not None and result.news.package == "pve-web-news"
    assert result.news.headline == "News displayed on the admin interface"
    assert result.news.description.startswith("<b>Welcome</b> to the Proxmox")
    assert "pve-web-news" not in index.all
    assert all(
        app.package != "pve-web-news" for sec in index.sections.values() for app in sec.values()
    )
    assert result.warnings == []
    ubuntu = index.all["ubuntu-25.04-standard_25.04-1.1_amd64.tar.zst"]
    assert ubuntu.version == "25.04-1"  # the name comes from Location, not from Version
    assert all(app.type == "lxc" and app.architecture == "amd64" for app in index.all.values())


def test_reference_index_round_trips_through_the_writer() -> None:
    text = reference_file("aplinfo-pve-9.dat").read_text()
    first = parse_aplinfo(text, BASE, strict=True)
    again = parse_aplinfo(serialize_aplinfo(first.appliances, first.news), BASE, strict=True)
    assert again.appliances == first.appliances and again.news == first.news


def test_relative_location() -> None:  # acceptance test 2
    (app,) = strict(record(*BASIC, "Location: system/x_1-1_amd64.tar.zst", "Description: d"))
    assert app.template == "x_1-1_amd64.tar.zst"
    assert app.url == "http://h/images/system/x_1-1_amd64.tar.zst"
    assert app.source == BASE


def test_absolute_location() -> None:  # acceptance test 3
    (app,) = strict(record(*BASIC, "Location: https://m/a/b/y_2_amd64.tar.gz", "Description: d"))
    assert app.template == "y_2_amd64.tar.gz"
    assert app.url == "https://m/a/b/y_2_amd64.tar.gz"


def test_legacy_names_without_location() -> None:  # acceptance test 4
    text = record(
        "Package: foo",
        "Version: 1.0-1",
        "Type: lxc",
        "OS: debian-12",
        "Infopage: i",
        "Description: d",
    )
    (app,) = strict(text)
    assert app.template == "debian-12-foo_1.0-1_i386.tar.gz"
    assert app.url == "http://h/images/unknown/debian-12-foo_1.0-1_i386.tar.gz"
    assert app.section == "unknown" and app.architecture is None
    text = record(
        "Package: debian-12-foo",
        "Version: 1.0-1",
        "Type: openvz",
        "OS: debian-12",
        "Architecture: amd64",
        "Infopage: i",
        "Description: d",
    )
    (app,) = strict(text)
    assert app.template == "debian-12-foo_1.0-1_amd64.tar.gz"


def test_description_continuation_lines() -> None:  # acceptance test 5
    (app,) = strict(record(*BASIC, "Location: x.tar.gz", "Description: Head", " long", " more"))
    assert (app.headline, app.description) == ("Head", "long more")


def test_paragraph_marker_is_literal_and_empty_headline_takes_next_line() -> None:
    (app,) = strict(record(*BASIC, "Location: x.tar.gz", "Description: H", " a", " .", " b"))
    assert app.description == "a . b"
    (app,) = strict(record(*BASIC, "Location: x.tar.gz", "description:", "  first", "  second"))
    assert (app.headline, app.description) == ("first", "second")


@pytest.mark.parametrize("missing", ["Infopage", "Package", "OS", "Version", "Type"])
def test_incomplete_record(missing: str) -> None:  # acceptance test 6
    lines = [ln for ln in BASIC if not ln.startswith(f"{missing}:")]
    bad = record(*lines, "Location: bad.tar.gz", "Description: d")
    good = record(*BASIC, "Location: good.tar.gz", "Description: d")
    with pytest.raises(AplinfoError, match=r"^found incomplete appliance records$"):
        strict(index_text(good, bad))
    apps, warnings = lenient(index_text(good, bad))
    assert [a.template for a in apps] == ["good.tar.gz"]
    assert warnings == ["found incomplete appliance records"]


def test_zero_counts_as_missing() -> None:
    text = record(*BASIC[:-1], "Infopage: 0", "Location: x.tar.gz", "Description: d")
    with pytest.raises(AplinfoError, match="incomplete"):
        strict(text)


def test_bad_version_and_type() -> None:  # acceptance test 7
    v = record("Package: x", "Version: v1.0", *BASIC[2:], "Location: x.tar.gz", "Description: d")
    with pytest.raises(AplinfoError, match=r"^unable to parse appliance record: version = 'v1.0'$"):
        strict(v)
    t = record(*BASIC[:2], "Type: qemu", *BASIC[3:], "Location: x.tar.gz", "Description: d")
    with pytest.raises(
        AplinfoError, match=r"^unable to parse appliance record: unknown type 'qemu'$"
    ):
        strict(t)
    apps, warnings = lenient(v)
    assert apps == []
    assert warnings == [
        "unable to parse appliance record: version = 'v1.0'",
        "found incomplete appliance records",
    ]
    assert strict(
        record(
            *BASIC[:1], "Version: 2:1.0+dfsg~1-3", *BASIC[2:], "Location: a.tar", "Description: d"
        )
    )


def test_lower_case_field_names() -> None:  # acceptance test 8
    text = record(
        "package: x",
        "version: 1",
        "type: lxc",
        "os: alpine",
        "infopage: i",
        "ManageUrl: http://__IPADDRESS__/",
        "location: system/x_1_amd64.tar.xz",
        "description: d",
    )
    (app,) = strict(text)
    assert app.template == "x_1_amd64.tar.xz"
    assert app.fields["manageurl"] == "http://__IPADDRESS__/"


def test_later_source_wins_for_download() -> None:  # acceptance test 9
    first = parse_aplinfo(
        stanza("same", section="system"), "http://a", strict=True, source_name="a"
    )
    second = parse_aplinfo(
        stanza("same", section="system"), "http://b", strict=True, source_name="b"
    )
    index = ApplianceIndex()
    index.merge(first)
    index.merge(second)
    assert index.all["same_1.0-1_amd64.tar.zst"].source_name == "b"
    assert index.sections["system"]["same_1.0-1_amd64.tar.zst"].url.startswith("http://b/")


def test_same_name_in_two_sections_shows_in_both() -> None:
    text = index_text(
        stanza("x", location="x_1_amd64.tar.gz", section="system"),
        stanza("x", location="x_1_amd64.tar.gz", section="mail"),
    )
    index = ApplianceIndex()
    index.merge(parse_aplinfo(text, BASE, strict=True))
    assert set(index.sections) == {"system", "mail"}
    assert index.all["x_1_amd64.tar.gz"].section == "mail"


@pytest.mark.parametrize("mode", [True, False])
def test_lz4_location_is_skipped(mode: bool) -> None:  # acceptance test 10
    text = index_text(
        record(*BASIC, "Location: http://h/p/foo.tar.lz4", "Description: d"),
        record(*BASIC, "Location: ok.tar.zst", "Description: d"),
    )
    res = parse_aplinfo(text, BASE, strict=mode)
    assert [a.template for a in res.appliances] == ["ok.tar.zst"]
    assert res.warnings == [
        "skipping appliance record 'x': unsupported template location 'http://h/p/foo.tar.lz4'"
    ]


def test_template_name_rules() -> None:
    assert is_template_name("a.tar") and is_template_name("a.TAR.ZST")
    assert is_template_name("débian-12_ü.tar.zst")
    hostile = (
        "a\x1b]0;pwned\x07b.tar.gz",
        "a\tb.tar",
        "a b.tar.gz",
        "a\nb.tar",
        "a" * 252 + ".tar",
    )
    for bad in ("a.tgz", "a.tar.lz4", "a.tar.gz.1", "a.zip", ".hidden.tar.gz", "a/b.tar", *hostile):
        assert not is_template_name(bad), bad
    # room for the download's temp name (<name>.tmp_dwnl, 9 bytes more): a longer name failed
    # every download with a traceback ('File name too long')
    assert is_template_name("a" * 242 + ".tar") and not is_template_name("a" * 243 + ".tar")
    assert not is_template_name("ü" * 122 + ".tar")  # bytes count, not characters (248)
    (app,) = strict(record(*BASIC, "Location: plain.tar", "Description: d"))
    assert app.template == "plain.tar" and app.url == "http://h/images/plain.tar"
    # A legacy name built from hostile fields would contain a '/': never a template name.
    hostile = record("Package: ../../x", *BASIC[1:], "Description: d")
    assert parse_aplinfo(hostile, BASE, strict=False).appliances == []


def test_whitespace_only_line_does_not_separate_records() -> None:
    text = record(
        *BASIC, "Location: a.tar.gz", "Description: d", "   ", *BASIC, "Location: b.tar.gz"
    )
    text += "Description: e\n"
    (app,) = strict(text)
    assert app.template == "a.tar.gz"
    assert "Location: b.tar.gz" in app.description


def test_description_must_be_last() -> None:
    swallowed = record(*BASIC, "Description: d", " long", "Location: lost.tar.gz")
    (app,) = strict(swallowed)
    assert app.location is None and app.description == "long\nLocation: lost.tar.gz"
    assert app.template == "debian-12-x_1-1_i386.tar.gz"
    trailing = record(*BASIC, "Description: d", "Location: x.tar.gz")
    with pytest.raises(
        AplinfoError, match=r"^unable to parse appliance record: Location: x.tar.gz$"
    ):
        strict(trailing)
    apps, warnings = lenient(trailing)
    assert apps == [] and warnings[0] == "unable to parse appliance record: Location: x.tar.gz"


def test_comment_line_corrupts_the_first_key() -> None:
    text = record("# a comment", *BASIC, "Location: x.tar.gz", "Description: d")
    with pytest.raises(AplinfoError, match="incomplete"):
        strict(text)


def test_crlf_keeps_carriage_return_in_headline() -> None:
    text = record(*BASIC, "Location: x.tar.gz", "Description: Head").replace("\n", "\r\n")
    (app,) = strict(text)
    assert app.headline == "Head\r" and app.package == "x" and app.template == "x.tar.gz"


def test_empty_file_and_news_without_body() -> None:
    assert parse_aplinfo("", BASE, strict=True).appliances == []
    assert parse_aplinfo("\n\n\n", BASE, strict=True).appliances == []
    with pytest.raises(AplinfoError, match="incomplete"):
        strict(record("Package: pve-web-news", "Description: headline only"))


def test_mirrors_apply_to_relative_locations_only() -> None:
    text = index_text(
        record(*BASIC, "Location: sys/a.tar.gz", "Description: d"),
        record(*BASIC, "Location: https://x/b.tar.gz", "Description: d"),
    )
    res = parse_aplinfo(text, BASE + "/", strict=True, mirrors=["http://m1/i/", "http://m2"])
    rel, absolute = res.appliances
    assert rel.urls == (
        "http://h/images/sys/a.tar.gz",
        "http://m1/i/sys/a.tar.gz",
        "http://m2/sys/a.tar.gz",
    )
    assert absolute.urls == ("https://x/b.tar.gz",)


def test_writer_golden_file() -> None:
    app = Appliance(
        fields={
            "sha512sum": "ab" * 64,
            "package": "demo",
            "x-custom": "kept",
            "version": "1.2-3",
            "type": "lxc",
            "os": "debian-13",
            "location": "system/demo_1.2-3_amd64.tar.zst",
            "infopage": "https://example.org/",
            "architecture": "amd64",
            "section": "system",
        },
        headline="Demo template",
        description="A longer text.",
    )
    plain = Appliance(fields=dict(app.fields, package="plain"), headline="Just a headline")
    text = serialize_aplinfo([app, plain])
    assert text == (GOLDEN / "serialized.dat").read_text()
    again = parse_aplinfo(text, BASE, strict=True).appliances
    assert [(a.fields, a.headline, a.description) for a in again] == [
        (app.fields, app.headline, app.description),
        (plain.fields, plain.headline, ""),
    ]


@pytest.mark.parametrize(
    ("fields", "headline", "description"),
    [
        ({"package": "a\nb"}, "h", ""),
        ({"package": " padded"}, "h", ""),
        ({"package": ""}, "h", ""),
        ({"description": "x"}, "h", ""),
        ({"bad key": "x"}, "h", ""),
        ({}, "", "long without headline"),
        ({}, "h", "two\nlines"),
    ],
)
def test_writer_refuses_what_cannot_round_trip(fields, headline, description) -> None:
    with pytest.raises(ValueError, match=r"cannot be written|needs a headline"):
        render_record(Appliance(fields=fields, headline=headline, description=description))


def test_value_may_start_on_a_later_line_and_a_trailing_zero_ends_the_record() -> None:
    """Perl's greedy white space after the colon crosses lines; a record whose rest is ``0``
    is false in Perl and ends the loop (both kept by the linear parser)."""
    (app,) = strict(record(*BASIC, "Location:", "   x.tar.gz", "Description: d"))
    assert app.location == "x.tar.gz"
    apps, warnings = lenient(record(*BASIC, "Location: x.tar.gz") + "0")
    assert [a.template for a in apps] == ["x.tar.gz"] and warnings == []


@pytest.mark.parametrize("key", ["Version:", "Type:", "Maintainer:"])
def test_a_long_run_of_spaces_is_parsed_in_linear_time(key: str) -> None:
    """Backtracking into the white space after the colon took minutes for 200,000 spaces."""
    text = record(*BASIC, "Location: x.tar.gz") + key + " " * 200_000
    start = time.monotonic()
    apps, warnings = lenient(text)
    assert time.monotonic() - start < 5
    assert apps == [] and warnings[0].startswith("unable to parse appliance record: ")


def test_a_record_of_many_fields_is_parsed_in_linear_time() -> None:
    """Cutting the record after each field copied it again: 400,000 fields took 27 s. Now
    such a record is refused at its 257th field, and the 256 before it parse as fields."""
    fields = [f"X-Field-{i}: v" for i in range(400_000)]
    start = time.monotonic()
    with pytest.raises(AplinfoError, match="more than 256 fields"):
        strict(record(*BASIC, *fields, "Location: x.tar.gz", "Description: d"))
    assert time.monotonic() - start < 2
    (app,) = strict(record(*BASIC, *fields[:200], "Location: x.tar.gz", "Description: d"))
    assert app.template == "x.tar.gz" and app.get("x-field-199") == "v"


def test_an_index_of_millions_of_fields_or_records_is_refused_early() -> None:
    """One record of 9 million fields (a 66 MB index, under the download limit) cost 850 MB
    on every pveam command that parsed it."""
    from index.aplinfo import MAX_FIELDS, MAX_RECORDS

    fat = record(*BASIC, *(f"X-{i}: v" for i in range(MAX_FIELDS + 1)), "Description: d")
    with pytest.raises(AplinfoError, match=f"more than {MAX_FIELDS} fields"):
        strict(index_text(fat))
    apps, warnings = lenient(index_text(fat))
    assert apps == [] and warnings == [
        f"unable to parse appliance record: more than {MAX_FIELDS} fields"
    ]
    many = index_text(*(record(*BASIC, "Description: d") for _ in range(MAX_RECORDS + 1)))
    with pytest.raises(AplinfoError, match=f"more than {MAX_RECORDS} appliance records"):
        strict(many)
    apps, warnings = lenient(many)
    assert len(apps) == MAX_RECORDS and warnings[-1].startswith(f"more than {MAX_RECORDS}")
