"""Ownership records: a live owner is recognised, a dead or reused pid is not."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shared import owner


def test_live_and_dead_owners(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    owner.write(path, {"vmid": 100})
    rec = owner.read(path)
    assert rec is not None and rec["vmid"] == 100 and rec["pid"] == os.getpid()
    assert owner.alive(rec)
    child = subprocess.Popen(["true"])
    child.wait()
    assert not owner.alive({"pid": child.pid, "starttime": rec["starttime"]})
    # the same pid with another start time is somebody else
    assert not owner.alive({"pid": os.getpid(), "starttime": rec["starttime"] + 1})
    owner.remove(path)
    assert owner.read(path) is None


def test_corrupt_or_symlinked_records_count_as_dead(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert owner.read(bad) == {}
    link = tmp_path / "link.json"
    link.symlink_to(bad)
    assert owner.read(link) == {}
    assert not owner.alive({})
