"""Owner records: a live owner is this very process (pid and start time), anything else is dead;
records are read without following links and bounded (issue 19 item 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import owner
from shared import owner as owners
from shared.errors import LockError

VMID = 900000042


def test_claim_update_release(ctroot: Path) -> None:
    me = owners.claim(VMID, "vzdump", tmpdir="/x/vzdumptmp1_900000042")
    assert owners.alive(me)
    owners.update(me, lock="backup", frozen=True)
    back = owners.read(VMID)
    assert back == me and back is not None and back.frozen and back.lock == "backup"
    assert owners.recorded_vmids() == [VMID]
    owners.release(me)
    assert owners.read(VMID) is None and owners.recorded_vmids() == []


def test_dead_and_reused_pids(ctroot: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        start = owners.process_start(proc.pid)
        assert start is not None
        boot = owners.boot_id()
        live = owners.Owner(VMID, "vzdump", proc.pid, start, boot)
        assert owners.alive(live)
        # the same pid with another start time is another process; another boot is dead too
        assert not owners.alive(owners.Owner(VMID, "vzdump", proc.pid, start + 1, boot))
        assert not owners.alive(owners.Owner(VMID, "vzdump", proc.pid, start, "other-boot"))
        owners._write(live)
        with pytest.raises(LockError, match=r"^CT is locked \(vzdump\)$"):
            owners.claim(VMID, "vzdump")
    finally:
        proc.kill()
        proc.wait()
    assert owners.process_start(proc.pid) is None
    assert not owners.alive(live)
    owners.claim(VMID, "vzdump")  # a dead owner's record does not block


def test_bad_records_are_dead_owners_that_did_nothing(ctroot: Path) -> None:
    path = owners.record_path(VMID)
    path.parent.mkdir(parents=True)
    for text in ("{", json.dumps({"vmid": VMID, "pid": "1"}), json.dumps({"vmid": 1}), "x" * 9000):
        path.write_text(text)
        bad = owners.read(VMID)
        assert bad is not None and bad.op == "unknown" and not bad.lock and not owners.alive(bad)
    path.unlink()
    target = ctroot / "elsewhere.json"
    target.write_text(json.dumps({"vmid": VMID, "op": "x", "pid": os.getpid(), "start": 1,
                                  "boot": "", "lock": "backup"}))  # fmt: skip
    path.symlink_to(target)
    bad = owners.read(VMID)
    assert bad is not None and bad.op == "unknown" and not bad.lock


def test_a_directory_at_a_records_name_is_a_dead_owner_and_goes(ctroot: Path) -> None:
    """A directory opens read-only and then fails its read (EISDIR): pct list, status, start
    and the scheduler's pass ended in a traceback. It reads as a dead owner that did nothing,
    and the recovery's removal takes it."""
    path = owners.record_path(VMID)
    (path / "inside").mkdir(parents=True)
    bad = owners.read(VMID)
    assert bad is not None and bad.op == "unknown" and not owners.alive(bad)
    owners.discard(VMID)
    assert not path.exists()
    free = ctroot / "r.json"
    free.mkdir()
    assert owner.read_record(free) == {}
    owner.remove_record(free)
    assert not free.exists()


def test_free_form_records_live_and_dead(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    owner.write_record(path, {"vmid": 100})
    rec = owner.read_record(path)
    assert rec is not None and rec["vmid"] == 100 and rec["pid"] == os.getpid()
    assert owner.record_alive(rec)
    child = subprocess.Popen(["true"])
    child.wait()
    assert not owner.record_alive({**rec, "pid": child.pid})
    # the same pid with another start time, or from another boot, is somebody else
    assert not owner.record_alive({**rec, "start": rec["start"] + 1})
    assert not owner.record_alive({**rec, "boot": "another boot"})
    owner.remove_record(path)
    assert owner.read_record(path) is None


def test_corrupt_or_symlinked_free_form_records_count_as_dead(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert owner.read_record(bad) == {}
    link = tmp_path / "link.json"
    link.symlink_to(bad)
    assert owner.read_record(link) == {}
    assert not owner.record_alive({})


def test_the_claim_is_fsynced_and_the_updates_are_not(ctroot: Path) -> None:
    """The claim comes before the config's lock, which is saved durably: it is fsynced, so a
    crash never leaves a lock without its owner. The updates skip the fsyncs (each guest of a
    backup writes several; fsyncs queue behind other workers' writes). Traced with strace in
    a child process: both rename a complete file, and only the claim's is fsynced (the file,
    then its directory)."""
    code = (
        "from shared import owner as o; me = o.claim(900000042, 'vzdump'); "
        "print('claimed', flush=True); o.update(me, frozen=True); "
        "assert o.read(900000042).frozen"
    )
    trace = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,write",
         sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env={**os.environ, "CTKIT_ROOT": str(ctroot)},
    )  # fmt: skip
    calls = [
        ln for ln in trace.stderr.splitlines() if not ln.startswith("write(") or "claimed" in ln
    ]
    assert sum("owner-900000042.json" in line for line in calls) == 2, calls
    marker = next(i for i, line in enumerate(calls) if "claimed" in line)
    syncs = [i for i, line in enumerate(calls) if "fsync(" in line or "fdatasync(" in line]
    assert len(syncs) == 2 and all(i < marker for i in syncs), calls
