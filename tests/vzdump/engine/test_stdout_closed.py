"""``vzdump --stdout | head``: a reader that stops early is the user's own pipe. The backup
stops cleanly with one INFO line and exits 141 (what a shell reports for SIGPIPE), not as a
failed guest (issue 20)."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import BIN, Host

pytestmark = pytest.mark.lxc


def test_reader_closing_stdout_stops_the_backup_cleanly(host: Host) -> None:
    ct = host.create(start=True)
    ct.write("big", os.urandom(16 << 20))  # far more than the pipes between us and head hold
    err = host.root / "vzdump.err"
    script = (
        f"{BIN}/vzdump {ct.vmid} --stdout --compress zstd --mode stop 2>{err}"
        # tar's listing line-buffered: fully buffered, it reached head only after tar had
        # read the whole archive whenever the big file came early (readdir order), and
        # vzdump then never met the closed pipe
        ' | zstd -dc | stdbuf -oL tar -tvf - | head -2; echo "rc=${PIPESTATUS[0]}"'
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert len(out) == 3 and out[0].endswith("./etc/vzdump/pct.conf"), out
    assert out[-1] == "rc=141"
    lines = err.read_text().splitlines()
    message = "the reader closed stdout - the archive written there is incomplete"
    # the README shows these four lines
    assert lines[-4] == f"INFO: Backup of VM {ct.vmid} stopped - {message}"
    assert lines[-3].startswith("INFO: Stopped at ")
    assert lines[-2] == f"INFO: Backup job stopped - {message}"
    assert lines[-1] == message  # the one-line error of the command
    assert not [ln for ln in lines if ln.startswith("ERROR:")], lines
    # stopped like any other ending: restarted, unlocked, nothing left behind
    assert "lock:" not in ct.conf() and ct.running()
    assert [p.name for p in host.dumpdir.iterdir() if f"-{ct.vmid}-" in p.name] == []
