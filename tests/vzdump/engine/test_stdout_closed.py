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
    err, part = host.root / "vzdump.err", host.root / "part.tar.zst"
    # head stops after the first MiB of a 16 MiB archive: vzdump meets the closed pipe
    # whatever the pace of the two sides (a reader that lists members could take the last
    # listing line before the shell had ended it, and let the backup run to its end)
    script = (
        f"{BIN}/vzdump {ct.vmid} --stdout --compress zstd --mode stop 2>{err}"
        f' | head -c 1048576 >{part}; echo "rc=${{PIPESTATUS[0]}}"'
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out == "rc=141\n"
    listing = subprocess.run(
        ["bash", "-c", f"zstd -dc {part} 2>/dev/null | tar -tvf - 2>/dev/null | head -1"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout  # fmt: skip
    assert listing.rstrip("\n").endswith("./etc/vzdump/pct.conf"), listing  # what it had begun
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
