"""The subuid/subgid check before an unprivileged container is created or started."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry
from shared.errors import ConfigError
from shared.runtime.idcheck import check_subids, covered, missing_line, read_ranges


@pytest.fixture
def subids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    monkeypatch.setenv("CTKIT_SUBUID", str(uid))
    monkeypatch.setenv("CTKIT_SUBGID", str(gid))
    return uid, gid


def test_ranges_of_root_only(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\nroot:100000:65536\n0:300000:10\n# comment\nroot:bad:1\n")
    assert read_ranges(f) == [(100000, 65536), (300000, 10)]
    assert read_ranges(tmp_path / "missing") == []


def test_coverage_may_span_adjacent_ranges() -> None:
    assert covered(100000, 65536, [(100000, 65536)])
    assert covered(100000, 65536, [(100000, 1000), (101000, 64536)])
    assert not covered(100000, 65536, [(100000, 1000), (101001, 64535)])
    assert not covered(100000, 65536, [(100000, 65535)])
    assert covered(100010, 10, [(0, 10), (100000, 65536)])


def test_complete_files_pass(subids: tuple[Path, Path]) -> None:
    for f in subids:
        f.write_text("root:100000:65536\n")
    check_subids(100, list(DEFAULT_UNPRIVILEGED))
    check_subids(100, [])  # privileged: nothing to check


def test_missing_gid_line_is_named_with_the_fix(subids: tuple[Path, Path]) -> None:
    uid, gid = subids
    uid.write_text("root:100000:65536\n")
    gid.write_text("lxd:100000:65536\n")
    with pytest.raises(ConfigError) as info:
        check_subids(100, list(DEFAULT_UNPRIVILEGED))
    assert str(info.value) == (
        f"{gid} has no line 'root:100000:65536' for the id map of CT 100"
        f" - add it with: echo 'root:100000:65536' >> {gid}"
    )


def test_custom_maps_are_checked_entry_by_entry(subids: tuple[Path, Path]) -> None:
    uid, gid = subids
    uid.write_text("root:100000:65536\n")
    gid.write_text("root:100000:65536\n")
    custom = [IdMapEntry("u", 0, 100000, 1000), IdMapEntry("u", 1000, 1000, 1)]
    assert missing_line(custom) == (uid, "root:1000:1")
