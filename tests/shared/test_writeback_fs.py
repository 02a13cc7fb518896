"""early_writeback: a loop-mounted ext4 image is written back while the block runs, and the
file system can be unmounted at once afterwards (no descriptor left open)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from shared.writeback import early_writeback
from tests.shared.storage.conftest import needs_root

pytestmark = needs_root


def written_sectors(dev: str) -> int:
    """Sectors written to a block device so far (field 7 of /sys/block/<dev>/stat)."""
    return int(Path(f"/sys/block/{os.path.basename(dev)}/stat").read_text().split()[6])


def _ext4_on_loop(tmp_path: Path) -> tuple[str, Path]:
    image, mnt = tmp_path / "fs.raw", tmp_path / "mnt"
    with open(image, "wb") as fh:
        fh.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
    return dev, mnt


def test_data_is_written_back_during_the_block(tmp_path: Path) -> None:
    dev, mnt = _ext4_on_loop(tmp_path)
    try:
        before = written_sectors(dev)
        with early_writeback([mnt], interval=0.05):
            (mnt / "data").write_bytes(os.urandom(32 << 20))
            deadline = time.monotonic() + 20
            while written_sectors(dev) - before < (32 << 20) // 512:
                assert time.monotonic() < deadline, "nothing written back within 20 s"
                time.sleep(0.05)
        # leaving the block closed the thread's descriptor: the unmount is not busy
        subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def test_stopped_on_an_exception_and_nothing_for_no_targets(tmp_path: Path) -> None:
    dev, mnt = _ext4_on_loop(tmp_path)
    try:
        with pytest.raises(RuntimeError), early_writeback([mnt]):
            raise RuntimeError("extraction failed")
        subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
    with early_writeback([]):
        pass


def test_a_symlink_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError), early_writeback([tmp_path / "link"]):
        pass


def test_a_signal_while_the_last_syncfs_runs_still_closes_the_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TERM while the thread finished its last syncfs cut the wait short: its descriptors
    stayed open, the unmount was lazy, and a restore's new volumes stayed busy (loop devices
    attached) until the process ended, so its cleanup could not free them."""
    import signal
    import threading

    from shared import signals, writeback

    dev, mnt = _ext4_on_loop(tmp_path)
    in_syncfs = threading.Event()

    def slow_syncfs(fd: int) -> int:
        in_syncfs.set()
        time.sleep(0.5)
        return 0

    monkeypatch.setattr(writeback, "_syncfs", lambda: slow_syncfs)
    try:
        with signals.interruptible(), pytest.raises(KeyboardInterrupt):
            with early_writeback([mnt], interval=0.01):
                assert in_syncfs.wait(10)
                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
            signals.raise_if_interrupted()  # acted on once the descriptors are closed
        subprocess.run(["umount", str(mnt)], check=True, capture_output=True)  # not busy
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
