"""Id maps and the lxc-usernsexec wrapper."""

from __future__ import annotations

import subprocess

import pytest

from shared.archive.idmap import (
    DEFAULT_UNPRIVILEGED,
    IdMapEntry,
    parse_idmap,
    root_ids,
    to_host,
    usernsexec_argv,
)
from shared.errors import ConfigError


def test_parse_and_argv() -> None:
    entries = [
        parse_idmap("u 0 100000 1000"),
        parse_idmap("u 1000 1000 1"),
        ("g", 0, 100000, 65536),
    ]
    assert entries[0] == IdMapEntry("u", 0, 100000, 1000)
    assert usernsexec_argv(entries) == [  # type: ignore[arg-type]
        "lxc-usernsexec",
        "-m",
        "u:0:100000:1000",
        "-m",
        "u:1000:1000:1",
        "-m",
        "g:0:100000:65536",
        "--",
    ]
    assert usernsexec_argv(None) == [] and usernsexec_argv([]) == []


@pytest.mark.parametrize(
    "bad", ["x 0 1 2", "u 0 1", "u a 1 2", "u 0 100000 0", "", "u 0 ² 1", "u 0 1 " + "9" * 5000]
)
def test_parse_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_idmap(bad)


def test_lookups() -> None:
    assert to_host(DEFAULT_UNPRIVILEGED, "u", 1000) == 101000
    assert to_host(DEFAULT_UNPRIVILEGED, "g", 65536) is None
    assert root_ids(DEFAULT_UNPRIVILEGED) == (100000, 100000)
    assert root_ids(None) == (0, 0)
    with pytest.raises(ConfigError):
        root_ids([IdMapEntry("u", 1, 100000, 10), IdMapEntry("g", 0, 100000, 10)])


def test_wrapper_really_maps_ids(wtmp: object) -> None:
    out = subprocess.run(
        [*usernsexec_argv(DEFAULT_UNPRIVILEGED), "cat", "/proc/self/uid_map"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["0", "100000", "65536"]
