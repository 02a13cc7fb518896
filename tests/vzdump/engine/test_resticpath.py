"""The restic backup of one tree, below the engine's modes: a backup restic could not read whole
is forgotten, even while another host holds a lock of the repository, and the stage it ran in
goes without taking the source's own mounts along."""

from __future__ import annotations

import os
import signal
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


def test_a_backup_to_a_hung_server_is_stopped(
    ctroot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restic has no timeout of its own: with its REST server stopped (SIGSTOP: connections
    are accepted, nothing answers) a backup waited for ever, holding the node's backup lock
    and, in stop mode, the container down. The stall bound (here 2 s) stops it."""
    from shared.storage import resticadmin
    from shared.storage.config import load_config
    from tests.shared.test_restic import free_port, running

    port = free_port()
    data = tmp_path / "restdata"
    data.mkdir()
    argv = ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(data)]
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    top = tmp_path / "tree"
    (top / "etc").mkdir(parents=True)
    (top / "etc/hostname").write_text("ct\n")
    monkeypatch.setattr(resticpath, "RESTIC_STALL", 2.0)
    with running(argv, port) as server:
        resticadmin.add("hung", {"repository": f"rest:http://127.0.0.1:{port}/"},
                        password=pw, init=True)  # fmt: skip
        store = load_config().get("hung")
        assert isinstance(store, ResticStorage)
        run = resticpath.ResticRun(store, VMID, int(time.time()), "stop", top, b"", b"", [], [])
        os.kill(server.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(StorageError, match=r"made no progress for 2 s .* restic stopped"):
                resticpath.backup(run, lambda _line: None)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert time.monotonic() - started < 30
    assert not resticpath.stage_dir(VMID).exists()
