"""The verification record beside an archive: what is read from it is only trusted when it is
a plain, bounded file with plausible values (no container needed)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from shared.backups.sidecar import last, read_all, sidecar_path
from shared.storage.listing import read_notes


def _within(seconds: float, call: object) -> object:
    """``call()``'s result, failing if it does not return in time (a FIFO would block it)."""
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)  # type: ignore[operator]
    worker.start()
    worker.join(seconds)
    assert box, "blocked"
    return box[0]


@pytest.mark.parametrize("when", [99_999_999_999_999, 10**20, True, -5, 1.5])
def test_an_implausible_time_is_no_verification(tmp_path: Path, when: object) -> None:
    """A record dated far ahead ranked as the newest (hiding a later failure) and counted as
    recent for ever; one out of range broke every listing with a traceback."""
    archive = tmp_path / "vzdump-lxc-100-2024_01_05-00_00_00.tar.zst"
    sidecar_path(archive).write_text(json.dumps({"verify": {"state": "ok", "time": when}}))
    assert last(archive) is None


def test_a_plausible_record_is_read(tmp_path: Path) -> None:
    archive = tmp_path / "vzdump-lxc-100-2024_01_05-00_00_00.tar.zst"
    stamp = int(time.time()) - 60
    sidecar_path(archive).write_text(json.dumps({"verify": {"state": "ok", "time": stamp}}))
    found = last(archive)
    assert found is not None and (found.state, found.time) == ("ok", stamp)


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_symlink_beside_the_archive_is_not_read(tmp_path: Path, kind: str) -> None:
    """A FIFO named like the record or the notes blocked vzdump list and verify for ever; a
    notes symlink to /etc/shadow showed its first line as the backup's notes."""
    archive = tmp_path / "vzdump-lxc-100-2024_01_05-00_00_00.tar.zst"
    secret = tmp_path / "secret"
    secret.write_text(json.dumps({"verify": {"state": "ok", "time": 1}}) + "\n")
    for path in (sidecar_path(archive), Path(f"{archive}.notes")):
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(secret)
    assert _within(5, lambda: read_all(archive)) == []
    assert _within(5, lambda: read_notes(archive)) is None
