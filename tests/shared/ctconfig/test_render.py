"""``pct config``, ``pct pending`` and ``pct listsnapshot`` output against golden files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ctconfig.config import parse_config
from shared.ctconfig.render import (
    config_dict,
    pending_list,
    render_config,
    render_pending,
    render_snapshot_tree,
    snapshot_list,
)
from shared.errors import NotFoundError, ParamError

GOLDEN = Path(__file__).parent / "golden" / "render"


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def _load(name: str, vmid: int) -> object:
    return parse_config((GOLDEN / name).read_bytes(), vmid)


def test_config_merged_current_and_pending() -> None:
    conf = parse_config((GOLDEN / "100-case16.conf").read_bytes(), 100)
    assert render_config(conf) == (GOLDEN / "100-case16.config.txt").read_text()
    assert render_config(conf, current=True) == (GOLDEN / "100-case16.current.txt").read_text()
    assert render_pending(conf) == (GOLDEN / "100-case16.pending.txt").read_text()


def test_config_of_a_snapshot() -> None:
    conf = parse_config((GOLDEN / "200-tree.conf").read_bytes(), 200)
    assert render_config(conf, snapshot="s2") == (GOLDEN / "200-tree.snapshot-s2.txt").read_text()
    with pytest.raises(NotFoundError, match=r"^snapshot 'nope' does not exist$"):
        render_config(conf, snapshot="nope")
    with pytest.raises(ParamError) as info:
        render_config(conf, current=True, snapshot="s2")
    assert set(info.value.errors) == {"snapshot", "current"}


def test_listsnapshot_tree(utc: None) -> None:
    conf = parse_config((GOLDEN / "200-tree.conf").read_bytes(), 200)
    expected = (GOLDEN / "200-tree.snapshots.txt").read_text()
    assert render_snapshot_tree(snapshot_list(conf)) == expected


def test_listsnapshot_without_snapshots(utc: None) -> None:
    conf = parse_config(b"memory: 512\n", 100)
    expected = "`-> current" + " " * 20 + " " + " " * 23 + " You are here!\n"
    assert render_snapshot_tree(snapshot_list(conf)) == expected


def test_snapshot_tree_long_prefixes_and_missing_times(utc: None) -> None:
    entries: list[dict[str, object]] = [{"name": "s0", "snaptime": 0, "description": ""}]
    for i in range(1, 30):
        entries.append(
            {"name": f"s{i}", "snaptime": i, "parent": f"s{i - 1}", "description": f"d{i}\nx"}
        )
    entries.append({"name": "current", "parent": "s29", "description": "You are here!"})
    lines = render_snapshot_tree(entries).splitlines()
    assert lines[0] == "`-> s0" + " " * 25 + " 1970-01-01 00:00:00     no-description"
    deep = lines[27]
    assert deep.startswith(" " * 27 + "`-> s27 1970-01-01 00:00:27")  # width clamps at 0
    assert deep.endswith(" d27")
    assert lines[-1].startswith(" " * 30 + "`-> current ")


def test_json_forms() -> None:
    conf = parse_config((GOLDEN / "100-case16.conf").read_bytes(), 100)
    data = config_dict(conf)
    assert data["memory"] == 512 and data["unprivileged"] == 1 and data["tty"] == 4
    assert data["ostype"] == "ubuntu" and "onboot" not in data
    assert data["description"] == "web server\n"
    assert data["env"] == "A=1"
    assert data["lxc"] == [["lxc.apparmor.profile", "unconfined"]]
    assert data["digest"] == conf.digest
    items = {i["key"]: i for i in pending_list(conf)}
    assert items["ostype"] == {"key": "ostype", "value": "debian", "pending": "ubuntu"}
    assert items["onboot"] == {"key": "onboot", "value": "1", "delete": 1}
    assert items["tty"] == {"key": "tty", "pending": "4"}
    snaps = snapshot_list(parse_config((GOLDEN / "200-tree.conf").read_bytes(), 200), running=True)
    assert snaps[-1] == {
        "name": "current",
        "digest": snaps[-1]["digest"],
        "running": 1,
        "description": "You are here!",
        "parent": "s3",
    }
    assert {s["name"]: s.get("parent") for s in snaps[:-1]} == {
        "old": "gone",
        "s1": None,
        "s2": "s1",
        "s2b": "s1",
        "s3": "s2",
    }


def test_pending_delete_of_forced_and_unset_keys() -> None:
    text = b"memory: 512\n[pve:pending]\ndelete: !memory,cores\n"
    conf = parse_config(text, 100)
    assert render_pending(conf) == "del memory: 512\n"
    items = {i["key"]: i for i in pending_list(conf)}
    assert items["memory"]["delete"] == 2 and items["cores"] == {"key": "cores", "delete": 1}


def test_description_in_pending_is_encoded() -> None:
    conf = parse_config(b"#old: one\n[pve:pending]\n#new\n", 100)
    assert render_pending(conf) == "cur description: old%3A one%0A\nnew description: new%0A\n"
