"""``--bwlimit``, the progress display, and storage checks."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import pytest

from pct.ops import restore_tree
from shared.errors import StorageError
from shared.fakehost import add_storage
from shared.tasklog import Progress
from tests.pct.restore.conftest import BASE_CONF, Backups, leftovers


def _big_archive(backups: Backups) -> str:
    tree = backups.tree()
    (tree / "random").write_bytes(os.urandom(6 << 20))  # incompressible: seconds at the limit
    return backups.archive(BASE_CONF, [(tree, "./")])


def test_bwlimit_slows_reading_the_archive(backups: Backups, new_vmid: Callable[[], int]) -> None:
    archive = _big_archive(backups)
    size = backups.path(archive).stat().st_size
    start = time.monotonic()
    backups.restore(new_vmid(), archive)
    unlimited = time.monotonic() - start
    rate = 1024  # KiB/s
    start = time.monotonic()
    backups.restore(new_vmid(), archive, bwlimit=rate)
    limited = time.monotonic() - start
    burst = rate * 1024 / 4
    assert limited >= (size - burst) / (rate * 1024) * 0.9
    assert limited > unlimited + 1


def test_progress_reports_archive_bytes(
    backups: Backups, vmid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _big_archive(backups)
    size = backups.path(archive).stat().st_size
    stream = io.StringIO()
    bars: list[Progress] = []

    def progress(label: str, total: int | None = None) -> Progress:
        bar = Progress(label, total, stream=stream, interval=0)
        bars.append(bar)
        return bar

    monkeypatch.setattr(restore_tree, "Progress", progress)
    backups.restore(vmid, archive, progress=True)
    assert [bar.total for bar in bars] == [size]
    assert bars[0].done == size  # every byte of the archive counted once
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("restoring: ") for line in lines)
    assert lines[-1].split(" of ")[0] != "restoring: 0B"


def test_storage_without_container_content(backups: Backups, vmid: int) -> None:
    add_storage(backups.root, "dir: isos\n\tpath /srv/isos\n\tcontent iso\n")
    archive = backups.archive(BASE_CONF)
    with pytest.raises(StorageError) as err:
        backups.restore(vmid, archive, storage="isos")
    assert str(err.value) == (
        f"unable to restore CT {vmid} - storage 'isos' does not support container directories"
    )
    assert leftovers(backups.root, vmid) == []
