"""The restic backup of one tree, below the engine's modes: a backup restic could not read whole
is forgotten, even while another host holds a lock of the repository, and the stage it ran in
goes without taking the source's own mounts along."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage import resticbackups
from shared.storage.resticplugin import ResticStorage
from vzdump.engine import resticpath

VMID = 900000031
UNREADABLE = Path("/proc/sys/vm/compact_memory")  # write-only, even for root


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A tree with one file restic cannot read (a write-only proc file bound over it)."""
    top = tmp_path / "tree"
    (top / "etc").mkdir(parents=True)
    (top / "etc/hostname").write_text("ct\n")
    bad = top / "bad"
    bad.touch()
    subprocess.run(["mount", "--bind", str(UNREADABLE), str(bad)], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(bad)], check=False)


def test_a_failed_backup_is_forgotten_after_another_hosts_lock(
    restic_store: ResticStorage, tree: Path
) -> None:
    store = restic_store
    other = subprocess.Popen(
        ["restic", "--quiet", "backup", "--stdin", "--host", "other"],
        env=store.repo.environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    repo = Path(store.repo.repository)
    try:
        deadline = time.monotonic() + 30
        while not list((repo / "locks").glob("[0-9a-f]*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.stdin is not None
        ends = threading.Timer(3.0, other.stdin.close)  # the other host's backup ends
        ends.start()
        run = resticpath.ResticRun(
            store, VMID, int(time.time()), "stop", tree, b"arch: amd64\n", b"", [], []
        )
        lines: list[str] = []
        with pytest.raises(StorageError, match="could not be read"):
            resticpath.backup(run, lines.append)
        ends.join()
    finally:
        if other.stdin is not None and not other.stdin.closed:
            other.stdin.close()
        other.wait(timeout=60)
    assert not any(ln.startswith("ERROR") for ln in lines), lines
    assert resticbackups.snapshots(store) == []  # forgotten once the lock was gone
    assert os.path.ismount(tree / "bad")  # the stage's unmount did not reach the source
    assert not resticpath.stage_dir(VMID).exists()
