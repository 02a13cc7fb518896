from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared import locks
from shared.errors import LockError

HOLDER = """
import sys, time
from pathlib import Path
from shared import locks
with locks.flock(Path(sys.argv[1]), 5):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_timeout_when_held_by_other_process(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    proc = _hold(lock, 3)
    try:
        started = time.monotonic()
        with pytest.raises(LockError, match="got timeout"), locks.flock(lock, 0.3):
            pass
        assert 0.25 < time.monotonic() - started < 2
        with (
            pytest.raises(LockError, match="custom"),
            locks.flock(lock, 0, timeout_message="custom"),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_waits_then_gets_lock(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    proc = _hold(lock, 0.5)
    waited: list[bool] = []
    try:
        with locks.flock(lock, 5, on_wait=lambda: waited.append(True)):
            assert proc.wait(timeout=5) == 0
        assert waited == [True]
    finally:
        proc.kill()
        proc.wait()


def test_config_lock_path(ctroot: Path) -> None:
    with locks.config_lock(900000001):
        assert (ctroot / "run/lock/lxc/pve-config-900000001.lock").exists()


def test_check_lock_value() -> None:
    locks.check_lock_value(None)
    with pytest.raises(LockError, match=r"^CT is locked \(backup\)$"):
        locks.check_lock_value("backup")


def test_a_worker_thread_waiting_for_a_lock_acts_on_a_signal(tmp_path: Path) -> None:
    """A thread other than the main one acts on a signal only where it looks: waiting for a busy
    config lock it waited out the lock's whole timeout (9 s of 10) before it stopped."""
    import os
    import signal
    import threading

    from shared import signals

    path = tmp_path / "busy.lock"
    holder = subprocess.Popen(["flock", str(path), "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        outcome: list[str] = []

        def worker() -> None:
            try:
                with locks.flock(path, 20):
                    outcome.append("locked")
            except KeyboardInterrupt:
                outcome.append("interrupted")

        with signals.interruptible(), signals.held():  # the main thread waits while another works
            thread = threading.Thread(target=worker)
            thread.start()
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGTERM)
            started = time.monotonic()
            thread.join(10)
        assert outcome == ["interrupted"] and time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """A read-only or full run directory ended every command in a traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    try:
        refused = pytest.raises(LockError, match=r"^can't lock file '.*/lock-100.conf' - Read-only")
        with refused, locks.flock(ro / "lock-100.conf", 1):
            pass
    finally:
        subprocess.run(["umount", str(ro)], check=True)
