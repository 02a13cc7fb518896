"""UPIDs: what a backup writes to its pid file and the scheduler to the job state, and the
liveness check both trust only with the process start time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vzdump.upid import UPID_RE, lives, make_upid, named_process


def test_a_upid_names_this_process_and_its_start() -> None:
    upid = make_upid(os.getpid(), "backup-a", 0x5F5E1000, node="pve1")
    assert upid.startswith(f"UPID:pve1:{os.getpid():08X}:")
    assert upid.endswith(":5F5E1000:vzdump:backup-a:root@pam:")
    named = named_process(upid)
    assert named is not None and named[0] == os.getpid()
    assert lives(*named)


def test_a_reused_pid_is_not_the_run() -> None:
    pid, pstart = named_process(make_upid(os.getpid(), "", 0)) or (0, 0)
    assert not lives(pid, pstart + 1)


def test_a_dead_process_does_not_live() -> None:
    proc = subprocess.Popen(["sleep", "30"])  # alive while its UPID is made: a zombie has none
    try:
        named = named_process(make_upid(proc.pid, "", 0))
        assert named is not None and lives(*named)
    finally:
        proc.kill()
        proc.wait()
    assert not lives(*named)


def test_text_without_a_start_time_names_no_process() -> None:
    assert named_process("") is None
    assert named_process("12345\n") is None
    assert named_process(f"UPID:n:{os.getpid():08X}:00000000:00000000:vzdump::root@pam:") is None
    assert UPID_RE.match(f"UPID:n:{os.getpid():08X}:00000000:00000000:vzdump::root@pam:")


def test_a_backup_run_leaves_the_scheduler_unloaded() -> None:
    """A backup run writes a UPID; it must not pay for loading the scheduler, its calendar and
    the job files (about 14 ms of every run's start)."""
    code = (
        "import json, sys; import vzdump.cli, vzdump.engine.job;"
        " print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "vzdump.upid" in loaded
    assert not loaded & {"vzdump.scheduler", "vzdump.calendar", "vzdump.jobs.config", "zoneinfo"}


def test_a_upid_started_after_2106_still_names_its_process() -> None:
    upid = make_upid(os.getpid(), "backup-a", 0x1_0000_0000, node="pve1")
    assert upid.endswith(":100000000:vzdump:backup-a:root@pam:")
    named = named_process(upid)
    assert named is not None and named[0] == os.getpid() and lives(*named)
