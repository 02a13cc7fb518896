"""Template lookup by exact name or prefix, and Debian version ordering."""

from __future__ import annotations

import pytest

from index.aplinfo import parse_aplinfo
from index.collection import ApplianceIndex
from index.lookup import NoSuchTemplate, find_template, name_parts
from index.versions import compare_versions
from tests.index.conftest import index_text, stanza


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("12.12-1", "12.7-1", 1),
        ("12.7-1", "12.12-1", -1),
        ("1.0", "1.0", 0),
        ("1.0~rc1", "1.0", -1),
        ("1:1.0", "2.0", 1),
        ("25.04-1.1", "25.04-1", 1),
        ("20250930", "20240911", 1),
        ("1.0a", "1.0", 1),
        ("1.0-2", "1.0-10", -1),
    ],
)
def test_compare_versions(a: str, b: str, sign: int) -> None:
    result = compare_versions(a, b)
    assert (result > 0) - (result < 0) == sign


@pytest.fixture
def index() -> ApplianceIndex:
    text = index_text(
        stanza("debian-12-standard", "12.7-1"),
        stanza("debian-12-standard", "12.12-1"),
        stanza("debian-12-standard", "12.9-1"),
        stanza("debian-12-standard", "12.20-1", arch="arm64"),
        stanza("debian-13-standard", "13.6-1"),
        stanza("alpine-3.22-default", "20250617"),
    )
    idx = ApplianceIndex()
    idx.merge(parse_aplinfo(text, "http://h", strict=True))
    return idx


def test_exact_name(index: ApplianceIndex) -> None:
    choice = find_template(index, "debian-12-standard_12.7-1_amd64.tar.zst")
    assert choice.appliance.version == "12.7-1" and choice.note is None


def test_prefix_picks_the_newest_for_this_arch(index: ApplianceIndex) -> None:
    choice = find_template(index, "debian-12-standard", arch="amd64")
    assert choice.appliance.template == "debian-12-standard_12.12-1_amd64.tar.zst"
    assert choice.note == (
        "using 'debian-12-standard_12.12-1_amd64.tar.zst', "
        "the newest template matching 'debian-12-standard'"
    )
    arm = find_template(index, "debian-12-standard", arch="arm64")
    assert arm.appliance.template == "debian-12-standard_12.20-1_arm64.tar.zst"
    other = find_template(index, "debian-12-standard", arch="riscv64")  # none native: all count
    assert other.appliance.version == "12.20-1"
    assert (
        find_template(index, "debian-12-standard_12.1", arch="amd64").appliance.version == "12.12-1"
    )
    assert find_template(index, "alpine").appliance.package == "alpine-3.22-default"


def test_unknown_and_ambiguous(index: ApplianceIndex) -> None:
    with pytest.raises(NoSuchTemplate) as exc:
        find_template(index, "debian-12-standard_12.8-1_amd64.tar.zst")
    assert str(exc.value) == "no such template"
    assert (
        exc.value.hint is not None and "debian-12-standard_12.12-1_amd64.tar.zst" in exc.value.hint
    )
    with pytest.raises(NoSuchTemplate) as exc:
        find_template(index, "nothing-like-it")
    assert exc.value.hint is None
    with pytest.raises(NoSuchTemplate, match="no such template") as exc:
        find_template(index, "debian-1")
    assert (
        exc.value.hint
        == "'debian-1' matches several packages: debian-12-standard, debian-13-standard"
    )
    with pytest.raises(NoSuchTemplate):
        find_template(index, "")


def test_name_parts() -> None:
    assert name_parts("debian-12-standard_12.12-1_amd64.tar.zst") == (
        "debian-12-standard",
        "12.12-1",
        "amd64",
    )
    assert name_parts("plain.tar") == ("plain", None, None)
