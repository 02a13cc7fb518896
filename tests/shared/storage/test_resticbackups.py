"""The backups of a restic storage, read from a real repository that others share: snapshots
whose tags or times no volume name can hold are not ours and are skipped, never a crash."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.storage.api import list_backups
from shared.storage.resticplugin import ResticStorage


def backup(store: ResticStorage, source: Path, tags: str, when: str, tz: str = "UTC") -> None:
    env = {**store.repo.environment(), "TZ": tz}
    subprocess.run(
        ["restic", "--quiet", *store.repo.global_args(), "backup", "--tag", tags,
         "--time", when, str(source)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip


def test_hostile_snapshots_are_skipped(restic_store: ResticStorage, tmp_path: Path) -> None:
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    ours = "vzdump,type=lxc,vmid=900000123,size=²"
    backup(store, source, ours, "2026-11-01 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=²³⁴", "2026-11-02 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=0123", "2026-11-03 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=900000123", "9999-12-31 23:00:00", "EST5EDT")
    backup(store, source, "vzdump,type=lxc,vmid=900000123", "0001-01-01 00:00:00")
    for vmid in (None, 900000123):
        (entry,) = list_backups("offsite", vmid)
        assert entry.volid == "offsite:backup/ct/900000123/2026-11-01T01:00:00Z"
        assert entry.size == 0  # a size tag int() cannot read counts as unknown
