"""vzdump's progress bar on a terminal (issue 20): it shows the total (the tree's size) and an
ETA, every log line is printed above it, and it is gone when the archive is written."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.terminal import open_pty, plain, read_all, screen

from .conftest import BIN, Host, only_archive, vzdump

pytestmark = pytest.mark.lxc


def test_backup_bar_on_a_terminal(host: Host) -> None:
    ct = host.create()
    ct.write("big", os.urandom(12 << 20))
    master, slave = open_pty()
    env = {**os.environ, "TERM": "xterm"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir), "--bwlimit", "4096"],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    raw = read_all(master)
    os.close(master)
    assert proc.wait(timeout=120) == 0, raw
    only_archive(host.dumpdir, ct.vmid)
    frames = plain(raw)
    label = f"backup of CT {ct.vmid}"
    # a total near the tree's size (12 MiB of data plus the system), never "?"
    totals = [float(t) for t in re.findall(rf"{label} .*?[\d.]+/([\d.]+) MiB", frames)]
    assert totals and all(12 <= t < 200 for t in totals), frames
    assert "/?" not in frames
    assert re.search(r"MB/s \d:\d\d:\d\d", frames)  # rate, then the time remaining
    shown = screen(raw)
    assert not [ln for ln in shown if label in ln], shown  # the bar is cleared at the end
    assert all(ln.startswith(("INFO: ", "WARN: ")) for ln in shown), shown
    assert any(ln.startswith("INFO: Total bytes written: ") for ln in shown), shown
    assert shown[-1] == "INFO: Backup job finished successfully"


def test_restore_bar_on_a_terminal(host: Host) -> None:
    """pct restore prints its lines on stdout and the bar on stderr: on one terminal the lines
    still go above the bar, which shows the archive's size and is gone at the end."""
    ct = host.create()
    ct.write("big", os.urandom(12 << 20))
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    master, slave = open_pty()
    env = {**os.environ, "TERM": "xterm"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [str(BIN / "pct"), "restore", str(host.new_vmid()), str(archive), "--storage", "local",
         "--bwlimit", "8192"],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    raw = read_all(master)
    os.close(master)
    assert proc.wait(timeout=120) == 0, raw
    frames = plain(raw)
    size = archive.stat().st_size / (1 << 20)
    totals = [float(t) for t in re.findall(r"restoring .*?[\d.]+/([\d.]+) MiB", frames)]
    assert totals and all(abs(t - size) < 0.2 for t in totals), (size, frames)
    shown = screen(raw)
    assert not [ln for ln in shown if "MiB " in ln and "/s" in ln], shown  # no bar left
    assert f"extracting archive '{archive}'" in shown, shown
    assert any(ln.startswith("Total bytes read: ") for ln in shown), shown
