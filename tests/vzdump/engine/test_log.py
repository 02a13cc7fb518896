"""The job log: what it keeps for the notification is bounded by the mail's limit, while the
guest's own log file gets every line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from pathlib import Path

import pytest

from vzdump.engine.log import JobLog
from vzdump.report import MAX_LOG_SIZE

from .conftest import BIN, Host, logfile, loud_hook, only_archive


def test_lines_kept_for_the_mail_stop_past_its_limit(ctroot: Path) -> None:
    log = JobLog(io.StringIO())
    line = "y" * 1000
    for _ in range(3000):
        log.info(line)  # a job-level line
    log.open_guest(900000001)
    for _ in range(3000):
        log.info(line)
    lines = log.close_guest(None)
    for kept in (log.lines, lines):
        size = sum(len(text) + 1 for text in kept)
        assert MAX_LOG_SIZE < size <= MAX_LOG_SIZE + len(line) + 10  # the mail says "too long"
    written = (ctroot / "var/log/vzdump/lxc-900000001.log").read_text().splitlines()
    assert len(written) == 3000


@pytest.mark.lxc
def test_a_hook_printing_much_leaves_the_memory_flat(host: Host) -> None:
    """A hook printing 128 MiB (2,000 lines of 64 KiB) before a guest's backup: every line was
    kept for the mail, 4 to 16 times its size in memory (535 MB of vzdump for this one), though
    the mail says only that the log was too long. The log file still gets every line."""
    ct = host.create()
    script = loud_hook(host.root / "loud-hook.sh", 2000, 65535)
    proc = subprocess.Popen(
        [str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
         "--script", str(script)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0
    while proc.poll() is None:  # its own high-water mark (a wait4's counts this forked pytest)
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(
                peak, int(next(ln for ln in status.splitlines() if "VmHWM" in ln).split()[1])
            )
        time.sleep(0.01)
    assert proc.returncode == 0
    assert 10 << 10 < peak < 150 << 10, peak  # KiB
    log = logfile(only_archive(host.dumpdir, ct.vmid))
    assert sum(1 for ln in log.open() if ln.endswith("y" * 100 + "\n")) == 2000
