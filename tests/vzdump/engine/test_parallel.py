"""Parallel backups (``--parallel N``): the same archives and guest logs as one worker, whole
prefixed console lines, a failing guest among healthy ones, SIGTERM in the middle of a run,
and ``--bwlimit`` as the total of the run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from .conftest import (
    BIN,
    CT,
    Host,
    archives,
    log_messages,
    logfile,
    loud_hook,
    member_text,
    only_archive,
    random_file,
    run,
    start_vzdump,
    vzdump,
    wait_for_line,
)
from .test_failures import assert_clean_failure
from .test_retention import fake_backup

pytestmark = pytest.mark.lxc

SUMMARY = "var/log/vzdump/vzdump.notification.json"


def members(archive: Path) -> list[tuple[object, ...]]:
    """Every member with its metadata and a digest of its data (times left out)."""
    out: list[tuple[object, ...]] = []
    with tarfile.open(archive) as tar:
        for info in tar:
            digest = ""
            if info.isfile():
                data = tar.extractfile(info)
                assert data is not None
                digest = hashlib.sha256(data.read()).hexdigest()
            out.append((info.name, info.type, info.mode, info.uid, info.gid, info.size,
                        info.linkname, digest))  # fmt: skip
    return out


def normalized(lines: list[str], dumpdir: Path) -> list[str]:
    """Log messages without what differs between two runs (times, sizes, archive names)."""
    return [re.sub(r"\d+", "N", line.replace(str(dumpdir), "DUMP")) for line in lines]


def guest_console_lines(lines: list[str], vmid: int) -> list[str]:
    prefix = f"CT {vmid}: "
    return [ln[len(prefix) :] for ln in lines if ln.startswith(prefix)]


def summary(host: Host) -> dict[str, dict[str, object]]:
    data = json.loads((host.root / SUMMARY).read_text())
    return {g["vmid"]: g for g in data["result"]["guests"]}


def terminate_after(
    proc: subprocess.Popen[bytes], line: str, count: int, timeout: float
) -> tuple[list[str], float]:
    """SIGTERM once ``line`` was logged ``count`` times (and half a second more); the whole
    log, and how long the job took to end after the signal."""
    try:
        seen: list[str] = []
        for _ in range(count):
            seen += wait_for_line(proc, line)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=timeout)
        took = time.monotonic() - started
    finally:
        proc.kill()
    return seen + err.decode().splitlines(), took


def test_three_workers_same_archives_and_logs(host: Host) -> None:
    """Six guests with one and with three workers: the same members and contents, the same
    guest logs; with three, every guest line on the console is whole and prefixed, guests
    start in VMID order, and the summary's start/end times show them overlapping."""
    cts = [host.create(start=i < 2) for i in range(6)]
    for i, ct in enumerate(cts):
        random_file(ct, f"data{i}", 256 << 10)
    vmids = [str(ct.vmid) for ct in cts]
    dumps = {n: host.root / f"dump{n}" for n in (1, 3)}
    results = {}
    for n, dumpdir in dumps.items():
        dumpdir.mkdir()
        hook = _barrier(host.root / f"barrier{n}", n)
        results[n] = vzdump(*vmids, "--dumpdir", str(dumpdir), "--mode", "suspend",
                            "--parallel", str(n), "--script", str(hook))  # fmt: skip
        assert results[n].rc == 0, results[n].err
    for ct in cts:
        one, three = (only_archive(dumps[n], ct.vmid) for n in (1, 3))
        assert members(one) == members(three)
        logs = [normalized(log_messages(logfile(a)), dumps[n]) for n, a in ((1, one), (3, three))]
        assert logs[0] == logs[1]
    assert all(ct.running() is (i < 2) for i, ct in enumerate(cts))

    lines = results[3].lines
    assert lines[0].startswith("INFO: starting new backup job: vzdump")
    assert lines[-1] == "INFO: Backup job finished successfully"
    for line in lines[1:-1]:
        assert re.match(r"CT \d+: (INFO|WARN|ERROR): ", line), line
    for ct in cts:
        console = guest_console_lines(lines, ct.vmid)
        in_file = log_messages(logfile(only_archive(dumps[3], ct.vmid)))
        assert [ln for ln in console if not ln.startswith("INFO: Backup ")] == in_file
    starts = [i for i, ln in enumerate(lines) if "INFO: Starting Backup of VM" in ln]
    first_three = {lines[i].split(":")[0] for i in starts[:3]}
    assert first_three == {f"CT {v}" for v in vmids[:3]}

    times = summary(host)
    spans = [(times[ct.vmid]["started"], times[ct.vmid]["finished"]) for ct in cts]
    assert all(isinstance(a, int) and isinstance(b, int) and a <= b for a, b in spans)
    assert max(a for a, _b in spans[:3]) <= min(b for _a, b in spans[:3])  # ran together


def _barrier(where: Path, count: int) -> Path:
    """A silent hook that holds each guest at backup-start until ``count`` guests have come
    there (at most 30 s): the first three of a three-worker job then overlap however late a
    worker starts, and a job that ran them one by one would take the 30 s."""
    where.mkdir()
    hook = where / "hook.sh"
    hook.write_text(
        "#!/bin/sh\n"
        '[ "$1" = backup-start ] || exit 0\n'
        f'touch "{where}/started-$3"\n'
        "i=0\n"
        f'while [ "$(ls {where} | grep -c started-)" -lt {count} ] && [ $i -lt 600 ]; do\n'
        "  sleep 0.05; i=$((i + 1))\n"
        "done\n"
    )
    hook.chmod(0o755)
    return hook


def test_failing_guests_do_not_stop_the_others(host: Host) -> None:
    """A guest whose hook fails and a guest locked by another operation fail with their own
    lines; the others are backed up (at the job's I/O priority); the job ends with errors
    (exit 13)."""
    cts = [host.create(start=True) for _ in range(4)]
    bad, locked = cts[1], cts[2]
    locked.conf_path.write_text(locked.conf() + "lock: backup\n")
    script = host.root / "hook.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = backup-start ] && [ "$3" = {bad.vmid} ] && exit 3\n'
                      '[ "$1" = backup-start ] && echo "io: $(ionice)"\nexit 0\n')  # fmt: skip
    script.chmod(0o755)
    res = vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir), "--mode",
                 "suspend", "--parallel", "3", "--script", str(script),
                 "--ionice", "8")  # fmt: skip
    assert res.rc == 13, res.err
    assert res.lines[-2:] == ["INFO: Backup job finished with errors", "job errors"]
    assert (
        f"CT {bad.vmid}: ERROR: Backup of VM {bad.vmid} failed - command "
        f"'{script} backup-start suspend {bad.vmid}' failed: exit code 3"
    ) in res.lines
    assert (
        f"CT {locked.vmid}: ERROR: Backup of VM {locked.vmid} failed - CT is locked (backup)"
    ) in res.lines
    assert "lock: backup" in locked.conf_lines() and not archives(host.dumpdir, locked.vmid)
    assert_clean_failure(bad, host.dumpdir, running=True)
    for ct in (cts[0], cts[3]):
        assert f"CT {ct.vmid}: INFO: io: idle" in res.lines  # ionice applies in every worker
        assert only_archive(host.dumpdir, ct.vmid) and ct.running()
        assert "lock:" not in ct.conf()
    assert {v: g["status"] for v, g in summary(host).items()} == {
        cts[0].vmid: "ok",
        bad.vmid: "err",
        locked.vmid: "err",
        cts[3].vmid: "ok",
    }


def assert_untouched(ct: CT, dumpdir: Path) -> None:
    assert ct.running() and ct.freezer_state() == "THAWED"
    assert "lock:" not in ct.conf()
    assert not archives(dumpdir, ct.vmid)
    left = [p.name for p in dumpdir.iterdir() if f"-{ct.vmid}-" in p.name]
    assert all(name.endswith(".log") for name in left), left


def test_sigterm_stops_every_worker(host: Host) -> None:
    """SIGTERM while three guests are being backed up: every one is cleaned up (thawed,
    running, unlocked, no .dat, temp dir or mount left), the rest is reported aborted, and the
    job ends with the signal's error (exit 130)."""
    cts = [host.create(start=True) for _ in range(4)]
    for ct in cts:
        random_file(ct, "big", 4 << 20)
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", "suspend", "--parallel", "3", "--bwlimit", "1024")  # fmt: skip
    lines, took = terminate_after(proc, "starting first sync", 3, timeout=60)
    assert proc.returncode == 130, lines
    assert took < 10, took
    assert lines[-2:] == ["ERROR: Backup job failed - interrupted by signal",
                          "interrupted by signal"]  # fmt: skip
    for ct in cts[:3]:
        assert (
            f"CT {ct.vmid}: ERROR: Backup of VM {ct.vmid} failed - interrupted by signal"
        ) in lines
    for ct in cts:
        assert_untouched(ct, host.dumpdir)
    assert not list((host.root / "var/tmp").glob("vzdumptmp*"))
    for slot in range(3):
        vzsnap = host.root / f"mnt/vzsnap{slot}"
        assert not vzsnap.exists() or not any(vzsnap.iterdir())
    guests = summary(host)
    assert guests[cts[3].vmid]["error"] == "aborted"


def test_bwlimit_is_the_total(host: Host) -> None:
    """Three workers share --bwlimit: while their archives are written together, the tar
    bytes of all three pass at the limit within 10% (each worker would get all of it
    otherwise)."""
    cts = [host.create() for _ in range(3)]
    for ct in cts:
        random_file(ct, "big", 6 << 20)
    limit = 3072
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", "stop", "--parallel", "3", "--bwlimit", str(limit))  # fmt: skip
    assert proc.stderr is not None
    stamped: list[tuple[float, str]] = []
    try:
        for raw in proc.stderr:
            stamped.append((time.monotonic(), raw.decode().rstrip("\n")))
        assert proc.wait(timeout=60) == 0, stamped
    finally:
        proc.kill()
    begin = min(t for t, ln in stamped if "creating vzdump archive" in ln)
    end = max(t for t, ln in stamped if "archive file size" in ln)
    written = [ln for _t, ln in stamped if "Total bytes written: " in ln]
    assert len(written) == 3
    total = sum(int(re.search(r"Total bytes written: (\d+)", ln).group(1)) for ln in written)  # type: ignore[union-attr]
    rate = total / (end - begin) / 1024
    assert 0.9 * limit <= rate <= 1.1 * limit, rate


def test_snapshot_mode_on_btrfs_with_three_workers(host: Host, btrfs: Path) -> None:
    """Three snapshot-mode backups at once: each worker mounts its snapshot at its own
    /mnt/vzsnap<slot>; every archive holds its own guest's data; no snapshot or mount is left."""
    cts = [host.create(rootfs="bt:0", start=True) for _ in range(3)]
    for ct in cts:
        ct.write("whoami", str(ct.vmid).encode())
    res = vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                 "--mode", "snapshot", "--parallel", "3")  # fmt: skip
    assert res.rc == 0, res.err
    for ct in cts:
        archive = only_archive(host.dumpdir, ct.vmid)
        assert member_text(archive, "./whoami") == str(ct.vmid)
        assert f"CT {ct.vmid}: INFO: backup mode: snapshot" in res.lines
        assert ct.running() and "lock:" not in ct.conf() and "[vzdump]" not in ct.conf()
        assert not [p for p in (btrfs / f"images/{ct.vmid}").iterdir() if "vzdump" in p.name]
    assert (host.root / "mnt/vzsnap1").is_dir()  # a second worker had its own mount point
    for slot in range(3):
        vzsnap = host.root / f"mnt/vzsnap{slot}"
        assert not vzsnap.exists() or not any(vzsnap.iterdir())


def test_retention_per_guest_after_its_archive(host: Host) -> None:
    """Each worker prunes its own guest's older backups once that guest's archive is final:
    keep-last=1 leaves exactly the new archive of every guest."""
    cts = [host.create() for _ in range(4)]
    older = {ct.vmid: fake_backup(host.dumpdir, ct.vmid, "2021-05-01 10:00") for ct in cts}
    res = vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                 "--prune-backups", "keep-last=1", "--parallel", "2")  # fmt: skip
    assert res.rc == 0, res.err
    for ct in cts:
        lines = guest_console_lines(res.lines, ct.vmid)
        final = lines.index(next(ln for ln in lines if ln.startswith("INFO: archive file size")))
        pruned = lines.index(f"INFO: delete old backup '{host.dumpdir / older[ct.vmid]}'")
        assert final < pruned
        assert [p.name for p in archives(host.dumpdir, ct.vmid)] != [older[ct.vmid]]
        assert len(archives(host.dumpdir, ct.vmid)) == 1


def test_stop_mode_with_two_workers_restarts_every_guest(host: Host) -> None:
    """Two running guests stopped, archived and started again at once (LXC driven from the
    worker threads)."""
    cts = [host.create(start=True) for _ in range(2)]
    res = vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                 "--mode", "stop", "--parallel", "2")  # fmt: skip
    assert res.rc == 0, res.err
    for ct in cts:
        assert f"CT {ct.vmid}: INFO: restarting vm" in res.lines
        assert only_archive(host.dumpdir, ct.vmid)
        assert ct.running() and "lock:" not in ct.conf()


def test_sigterm_ends_a_long_hook_in_a_worker(host: Host) -> None:
    """A worker waiting for a slow hook (backup-start) is interrupted at once: the hook is
    killed, the guest cleaned up, and the job ends with the signal's error."""
    cts = [host.create() for _ in range(2)]
    script = host.root / "slow-hook.sh"
    script.write_text('#!/bin/sh\n[ "$1" = backup-start ] && exec sleep 60\nexit 0\n')
    script.chmod(0o755)
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", "stop", "--parallel", "2", "--script", str(script))  # fmt: skip
    lines, took = terminate_after(proc, "ionice priority", 2, timeout=30)
    assert proc.returncode == 130 and took < 15, (took, lines)  # the hook sleeps 60 s
    for ct in cts:
        assert (
            f"CT {ct.vmid}: ERROR: Backup of VM {ct.vmid} failed - interrupted by signal" in lines
        )
        assert "lock:" not in ct.conf() and not archives(host.dumpdir, ct.vmid)
    assert not list((host.root / "var/tmp").glob("vzdumptmp*"))


def test_a_loud_hook_is_relayed_in_time(host: Host) -> None:
    """A hook printing 40,000 lines of 1,000 bytes for each guest: a guest's lines came back
    with its result in one line, which the main process split again at each 64 KiB read (24 s
    for two guests, quadratic in the output, and a signal waited for it). Split once it is
    whole, and with the lines a result carries bounded (those kept for the mail), every line
    comes through and the job's processes take about a second of CPU."""
    cts = [host.create() for _ in range(2)]
    script = loud_hook(host.root / "loud-hook.sh", 40000, 1000)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                 "--mode", "stop", "--parallel", "2", "--script", str(script))  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert res.rc == 0, res.err[-2000:]
    for ct in cts:
        loud = f"CT {ct.vmid}: INFO: {'y' * 1000}"
        assert sum(line == loud for line in res.lines) == 40000
    # the CPU time of the job's processes, not the wall time, which a loaded host stretches
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu < 8, cpu


def _workers_of(pid: int) -> list[int]:
    """The worker processes a parallel job forked (its children that run Python, not tar)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(c)
        for c in children
        if Path(f"/proc/{c}/exe").resolve() == Path(f"/proc/{pid}/exe").resolve()
    ]


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if Path(f"/proc/{p}").exists()]
        time.sleep(0.05)


def test_kill_9_of_the_job_lets_every_worker_clean_up(host: Host) -> None:
    """``kill -9`` of the job while three guests are being backed up: each worker hears of its
    job's death and cleans its guest up at once (running, thawed, unlocked, no archive, .dat or
    temp dir), leaving nothing for the next command to recover."""
    cts = [host.create(start=True) for _ in range(3)]
    for ct in cts:
        random_file(ct, "big", 4 << 20)
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", "suspend", "--parallel", "3", "--bwlimit", "1024")  # fmt: skip
    try:
        for _ in range(3):
            wait_for_line(proc, "starting first sync")
        workers = _workers_of(proc.pid)
        assert len(workers) == 3, workers
        proc.kill()
        proc.wait(timeout=10)
        _wait_gone(workers, timeout=30)
    finally:
        proc.kill()
    for ct in cts:
        assert "lock:" not in ct.conf()
        assert not (host.root / f"var/lib/ctkit/owners/owner-{ct.vmid}.json").exists()
        assert ct.freezer_state() == "THAWED"
        res = run([str(BIN / "pct"), "status", str(ct.vmid)])
        assert res.out.decode().strip() == "status: running", res.err
        assert "recovering" not in res.err, res.err  # nothing was left to recover
        assert_untouched(ct, host.dumpdir)
    assert not list((host.root / "var/tmp").glob("vzdumptmp*"))


def test_a_worker_killed_on_its_own_fails_only_its_guest(host: Host) -> None:
    """A worker killed outright fails its own guest with a line that says so; the job goes
    on, a new worker backs up the next guest, and the next command recovers what the killed
    one left."""
    cts = [host.create(start=True) for _ in range(3)]
    random_file(cts[0], "big", 4 << 20)
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", "suspend", "--parallel", "2", "--bwlimit", "1024")  # fmt: skip
    try:
        wait_for_line(proc, f"CT {cts[0].vmid}: INFO: starting first sync")
        record = json.loads(
            (host.root / f"var/lib/ctkit/owners/owner-{cts[0].vmid}.json").read_text()
        )
        assert record["pid"] in _workers_of(proc.pid)
        os.kill(record["pid"], signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = err.decode().splitlines()
    assert proc.returncode == 13, lines
    assert (
        f"CT {cts[0].vmid}: ERROR: Backup of VM {cts[0].vmid} failed - "
        "backup worker killed by signal SIGKILL"
    ) in lines
    for ct in cts[1:]:
        assert only_archive(host.dumpdir, ct.vmid), lines
    assert {v: g["status"] for v, g in summary(host).items()} == {
        cts[0].vmid: "err",
        cts[1].vmid: "ok",
        cts[2].vmid: "ok",
    }
    assert "lock: backup" in cts[0].conf()  # the killed worker's: the next command's to undo
    res = vzdump(str(cts[0].vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
    assert res.rc == 0, res.err
    assert any("ended without cleaning up - recovering" in ln for ln in res.lines), res.lines
    assert only_archive(host.dumpdir, cts[0].vmid) and cts[0].running()


def _worker_of(host: Host, ct: CT) -> int:
    return int(json.loads(
        (host.root / f"var/lib/ctkit/owners/owner-{ct.vmid}.json").read_text()
    )["pid"])  # fmt: skip


def _signal_first_worker(
    host: Host, cts: list[CT], mode: str, line: str, sig: signal.Signals
) -> None:
    """Back ``cts`` up with two workers, signal the first guest's worker alone once it logs
    ``line``: only that guest fails. The first two guests are slow, so both slots are busy
    then and the third guest takes the signalled worker's slot."""
    for ct in cts[:2]:
        random_file(ct, "big", 4 << 20)
    proc = start_vzdump(*(str(ct.vmid) for ct in cts), "--dumpdir", str(host.dumpdir),
                        "--mode", mode, "--parallel", "2", "--bwlimit", "1024")  # fmt: skip
    try:
        wait_for_line(proc, f"CT {cts[0].vmid}: INFO: {line}")
        os.kill(_worker_of(host, cts[0]), sig)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = err.decode().splitlines()
    assert proc.returncode == 13, lines
    statuses = {v: g["status"] for v, g in summary(host).items()}
    assert statuses == {ct.vmid: "err" if ct is cts[0] else "ok" for ct in cts}, lines


def test_a_worker_killed_with_its_volumes_mounted_leaves_its_slot_to_the_next(host: Host) -> None:
    """Killed while its guest's volumes were mounted at its slot's /mnt/vzsnap<slot> (in the
    job's mount namespace): the next worker of that slot found them there and failed its
    guest ('mount point ... not empty'), a guest nobody killed."""
    cts = [host.create(start=True) for _ in range(3)]
    _signal_first_worker(host, cts, "stop", "creating vzdump archive", signal.SIGKILL)
    assert cts[1].running() and cts[2].running()
    res = vzdump(str(cts[0].vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop")
    assert res.rc == 0, res.err
    assert only_archive(host.dumpdir, cts[0].vmid) and cts[0].running()


def test_a_worker_signalled_on_its_own_gives_its_slot_a_new_worker(host: Host) -> None:
    """SIGTERM to one worker alone ends its guest as the job's SIGTERM would. The worker went
    on taking guests with the signal still noted, and ended each at once as interrupted."""
    cts = [host.create(start=True) for _ in range(4)]
    _signal_first_worker(host, cts, "suspend", "starting first sync", signal.SIGTERM)
    for ct in cts:
        assert ct.running() and "lock:" not in ct.conf()
        assert ct.freezer_state() != "FROZEN"
    assert not archives(host.dumpdir, cts[0].vmid)


CRASHING = """
import sys
from vzdump.engine import parallel

vmid, real = int(sys.argv[1]), parallel.GuestBackup.run

def run(self):
    result = real(self)
    if self.vmid == vmid:  # a bug after the guest's own work, outside its error handling
        raise RuntimeError("boom in the worker")
    return result

parallel.GuestBackup.run = run
sys.argv = ["vzdump", *sys.argv[2:]]
from shared.entry import vzdump
vzdump()
"""


def test_a_worker_that_fails_by_a_bug_says_why(host: Host) -> None:
    """A worker ended by an exception of its own showed only ``backup worker ended with exit
    code 1``: its guest's line now names the exception, and its traceback is on stderr. A new
    worker backs up the next guest."""
    import sys

    cts = [host.create() for _ in range(3)]
    res = run([sys.executable, "-c", CRASHING, str(cts[0].vmid), *(str(ct.vmid) for ct in cts),
               "--dumpdir", str(host.dumpdir), "--parallel", "2"])  # fmt: skip
    assert res.rc == 13, res.err
    assert (
        f"CT {cts[0].vmid}: ERROR: Backup of VM {cts[0].vmid} failed - "
        "backup worker failed: RuntimeError: boom in the worker"
    ) in res.lines, res.err
    assert "Traceback (most recent call last):" in res.err
    assert {v: g["status"] for v, g in summary(host).items()} == {
        cts[0].vmid: "err",
        cts[1].vmid: "ok",
        cts[2].vmid: "ok",
    }
    for ct in cts[1:]:
        assert only_archive(host.dumpdir, ct.vmid), res.err
