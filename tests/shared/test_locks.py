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
