"""The backup listing behind ``vzdump list``: what a storage's writers put into it is shown
escaped in text output, and as written in JSON."""

from __future__ import annotations

from pathlib import Path

from shared.backups.inventory import list_backup_rows
from shared.storage.resticbackups import encode_notes
from shared.storage.resticplugin import ResticStorage
from tests.shared.storage.test_resticbackups import backup

HOSTILE = "ok\x1b[31mRED\x1b]0;TITLE\x07\rFAKE"


def test_restic_notes_cannot_drive_the_terminal(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """Another writer of a shared repository tags a snapshot with notes holding escape
    sequences: the text listing shows them escaped (it printed them raw)."""
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    notes = encode_notes(HOSTILE + "\nx")
    tags = f"vzdump,type=lxc,vmid=900000123,time={stamp},notes={notes}"
    backup(restic_store, source, tags, "2026-01-01 10:00:00")
    (row,) = list_backup_rows("offsite")
    assert row.notes_line == r"ok\x1b[31mRED\x1b]0;TITLE\x07\x0dFAKE"
    assert row.as_dict()["notes"] == HOSTILE + "\nx"  # JSON escapes it itself
