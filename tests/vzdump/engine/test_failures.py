"""Failure handling (vzdump §7, §10 cases 16-18, 34, 40): a failure at each stage leaves no
archive under a final name and no .dat, the lock removed, the CT thawed or running again, the
snapshot and the temp dir gone, and the .log written; the job goes on with the next guest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from shared.runtime.cgroups import CGroup
from shared.testbed import monitor_pid

from .conftest import (
    BIN,
    CT,
    Host,
    archives,
    kill_tar_of,
    log_messages,
    pct,
    random_file,
    start_vzdump,
    vzdump,
    wait_for_line,
)

pytestmark = pytest.mark.lxc


def assert_clean_failure(ct: CT, dumpdir: Path, *, running: bool) -> list[str]:
    """The §7 guarantees after a failed guest; returns its log's messages."""
    left = sorted(p.name for p in dumpdir.iterdir() if f"-{ct.vmid}-" in p.name)
    assert len(left) == 1 and left[0].endswith(".log"), left  # no .dat, archive or .tmp
    assert not archives(dumpdir, ct.vmid)
    conf = ct.conf()
    assert "lock:" not in conf and "[vzdump]" not in conf
    assert ct.running() is running
    if running:
        assert ct.freezer_state() == "THAWED"
    vzsnap = ct.root / "mnt/vzsnap0"
    assert not vzsnap.exists() or not any(vzsnap.iterdir())
    assert not list((ct.root / "var/tmp").glob("vzdumptmp*"))
    return log_messages(dumpdir / left[0])


@pytest.mark.parametrize(
    ("mode", "storage", "options", "stage"),
    [
        ("snapshot", "bt", ["--compress", "zstd", "--zstd", "0"], "| zstd --threads=1 >"),
        ("stop", "local", ["--compress", "gzip", "--pigz", "4", "--bwlimit", "16384"],
         "| cstream -t 16777216 | pigz -p 4 --rsyncable >"),
        ("suspend", "local", ["--compress", "lzo"], "command 'rsync --stats -h -X -A"),
    ],
    ids=["snapshot-zstd", "stop-pigz-bwlimit", "suspend-rsync"],
)  # fmt: skip
def test_out_of_space(
    host: Host, btrfs: Path, tiny_fs: Path, mode: str, storage: str, options: list[str],
    stage: str,
) -> None:  # fmt: skip
    """Case 18 (and the command lines of cases 35/36 as the error shows them): ENOSPC on a
    tiny dump directory in each mode; the CT is left running and thawed."""
    ct = host.create(rootfs=f"{storage}:0", start=True)
    random_file(ct, "big", 8 << 20)
    res = vzdump(str(ct.vmid), "--dumpdir", str(tiny_fs), "--mode", mode, *options)
    assert res.rc == 13, res.err
    err = next(ln for ln in res.lines if ln.startswith(f"ERROR: Backup of VM {ct.vmid} failed"))
    assert stage in err and "failed: exit code" in err
    msgs = assert_clean_failure(ct, tiny_fs, running=True)
    assert msgs[-1] == err and not any(m.startswith("ERROR: Backup job") for m in msgs)
    assert "No space left on device" in res.err
    if mode == "suspend":  # §4.3: rsync's complaint is an error line (it was INFO: ERROR: ...)
        assert any(ln.startswith("ERROR: rsync") and "No space left" in ln for ln in res.lines)
        assert not any(ln.startswith("INFO: ERROR") for ln in res.lines)
    if "zstd" in options:
        # zstd's reason, the end of its message, is in the error line too
        assert re.search(r"failed: exit code \d+ - zstd: No space left on device$", err), err
    assert "snapshot 'vzdump'" not in ct.conf()


def test_tar_killed(host: Host) -> None:
    """The tar stage dies (SIGKILL from outside): the pipeline fails, the running CT that stop
    mode shut down is started again, nothing is left under a final name."""
    ct = host.create(start=True)
    random_file(ct, "big", 8 << 20)
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                        "--bwlimit", "2048")  # fmt: skip
    try:
        kill_tar_of(ct.vmid)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = err.decode().splitlines()
    assert proc.returncode == 13
    assert "INFO: restarting vm" in lines
    failed = next(ln for ln in lines if ln.startswith(f"ERROR: Backup of VM {ct.vmid} failed"))
    assert "tar" in failed
    assert_clean_failure(ct, host.dumpdir, running=True)


def test_a_dat_that_cannot_be_removed_fails_only_its_guest(host: Host) -> None:
    """A failed guest's ``.dat`` that cannot be removed (its dump directory gone read-only
    mid-run; here the file made immutable while it is written: EPERM) ended the whole job in
    a traceback, and the guests after it were never backed up. The failure warns that the
    file stays, and the job goes on."""
    first, second = host.create(), host.create()
    random_file(first, "big", 4 << 20)
    proc = start_vzdump(str(first.vmid), str(second.vmid), "--dumpdir", str(host.dumpdir),
                        "--mode", "stop", "--bwlimit", "1024")  # fmt: skip
    dat: Path | None = None
    try:
        deadline = time.monotonic() + 60
        while dat is None:
            assert proc.poll() is None and time.monotonic() < deadline, "no .dat written"
            found = list(host.dumpdir.glob(f"vzdump-lxc-{first.vmid}-*.dat"))
            if found and found[0].stat().st_size > 0:
                dat = found[0]
            time.sleep(0.02)
        subprocess.run(["chattr", "+i", str(dat)], check=True)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        if dat is not None:
            subprocess.run(["chattr", "-i", str(dat)], check=False)
    lines = err.decode().splitlines()
    assert proc.returncode == 13 and not any("Traceback" in ln for ln in lines), lines
    assert f"WARN: unable to remove '{dat}' - Operation not permitted" in lines, lines
    assert any(ln.startswith(f"ERROR: Backup of VM {first.vmid} failed") for ln in lines)
    assert "lock:" not in first.conf() and not archives(host.dumpdir, first.vmid)
    assert len(archives(host.dumpdir, second.vmid)) == 1, lines


def test_a_monitor_that_does_not_answer_fails_its_guest_in_one_line(host: Host) -> None:
    """A CT whose LXC monitor is stopped (or stuck) held the whole nightly job for ever, in
    liblxc's state query; now that guest fails in one line and the next one is backed up."""
    silent, healthy = host.create(start=True), host.create(start=True)
    monitor = monitor_pid(host.root / "var/lib/lxc", silent.vmid)
    os.kill(monitor, signal.SIGSTOP)
    try:
        res = vzdump(str(silent.vmid), str(healthy.vmid), "--dumpdir", str(host.dumpdir),
                     "--mode", "suspend", timeout=90)  # fmt: skip
    finally:
        os.kill(monitor, signal.SIGCONT)
    assert res.rc == 13, res.err
    assert res.has(
        f"ERROR: Backup of VM {silent.vmid} failed - CT {silent.vmid}: LXC's monitor does not "
        "answer (no reply in 5 s)"
    ), res.err
    assert any(ln.startswith(f"INFO: Finished Backup of VM {healthy.vmid}") for ln in res.lines)
    assert len(archives(host.dumpdir, healthy.vmid)) == 1
    assert_clean_failure(silent, host.dumpdir, running=True)


def test_lock_and_busy_vzsnap_fail_before_anything(host: Host) -> None:
    """Case 17 and 40: a CT locked by another operation fails with `CT is locked (migrate)` and
    keeps its lock and the job goes on with the next guest; a non-empty /mnt/vzsnap0 fails
    stop mode before the CT is stopped, and the lock is removed."""
    locked = host.create()
    locked.conf_path.write_text(locked.conf() + "lock: migrate\n")
    busy = host.create(start=True)
    vzsnap = host.root / "mnt/vzsnap0"
    vzsnap.mkdir(parents=True)
    (vzsnap / "leftover").write_text("x")
    res = vzdump(str(locked.vmid), str(busy.vmid), "--dumpdir",
                 str(host.dumpdir), "--mode", "stop")  # fmt: skip
    assert res.rc == 13
    assert f"ERROR: Backup of VM {locked.vmid} failed - CT is locked (migrate)" in res.lines
    assert "lock: migrate" in locked.conf_lines()
    assert f"ERROR: Backup of VM {busy.vmid} failed - mount point '{vzsnap}' not empty" in res.lines
    assert busy.running() and "lock:" not in busy.conf()
    assert not any("stopping virtual guest" in ln for ln in res.lines)
    assert (vzsnap / "leftover").exists()


def test_a_dump_directory_the_ct_root_cannot_search_still_backs_up(host: Host) -> None:
    """A --dumpdir made 0750 (root's umask 027, say): tar, as the unprivileged CT's root, could
    not read the backup's temporary directory inside it (exit 2; then a one-line refusal).
    tar now starts in that directory, entered as root: the dump directory's mode is root's
    business, and both CTs back up, and restore."""
    closed = host.root / "closed"
    closed.mkdir(mode=0o750)
    closed.chmod(0o750)
    ct = host.create(start=True)
    privileged = host.create(unprivileged=False)
    res = vzdump(str(ct.vmid), str(privileged.vmid), "--dumpdir", str(closed), "--mode", "suspend")
    assert res.rc == 0, res.lines
    assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
    (archive,) = archives(closed, ct.vmid)
    assert len(archives(closed, privileged.vmid)) == 1
    assert not [p for p in closed.iterdir() if p.suffix == ".tmp"]
    restored = host.new_vmid()
    pct("restore", str(restored), str(archive))
    pct("start", str(restored))
    pct("stop", str(restored))


def test_failing_hooks(host: Host) -> None:
    """Case 34 and the §4.6 table, phase by phase, on a running CT in suspend mode."""
    ct = host.create(start=True)
    hook = str(host.hook())
    vm = str(ct.vmid)

    def backup(*fail: str, mode: str = "suspend") -> tuple[int, list[str], list[str]]:
        host.hook_fail(*fail)
        for old in host.dumpdir.iterdir():
            old.unlink()
        res = vzdump(vm, "--dumpdir", str(host.dumpdir), "--mode", mode, "--script", hook)
        return res.rc, res.lines, [c["args"].split()[0] for c in host.hook_calls()]

    def cmd(phase: str, mode: str = "suspend") -> str:
        guest = f" {mode} {vm}" if phase not in ("job-init", "job-start", "job-end",
                                                 "job-abort") else ""  # fmt: skip
        return f"command '{hook} {phase}{guest}' failed: exit code 3"

    # job-init: a setup error, the job dies before any guest (no job-abort)
    rc, lines, phases = backup("job-init")
    assert rc == 11 and phases == ["job-init"]
    assert f"ERROR: Backup job failed - {cmd('job-init')}" in lines
    # job-start: job-abort runs, no guest
    rc, lines, phases = backup("job-start")
    assert rc == 11 and phases == ["job-init", "job-start", "job-abort"]
    # job-abort's own failure is appended to the error
    rc, lines, phases = backup("job-start", "job-abort")
    at = lines.index(f"ERROR: Backup job failed - {cmd('job-start')}")
    assert lines[at + 1] == f"ERROR: {cmd('job-abort')}"
    # guest phases: the guest fails, backup-abort and log-end still run, CT thawed
    for phase in ("backup-start", "pre-stop", "pre-restart", "post-restart"):
        rc, lines, phases = backup(phase)
        assert rc == 13, phase
        assert f"ERROR: Backup of VM {vm} failed - {cmd(phase)}" in lines
        assert phases[-3:] == ["backup-abort", "log-end", "job-end"], phases
        assert_clean_failure(ct, host.dumpdir, running=True)
    # backup-end: the guest fails but the archive stays
    rc, lines, phases = backup("backup-end")
    assert rc == 13 and len(archives(host.dumpdir, ct.vmid)) == 1
    # backup-abort and log-end only warn
    rc, lines, phases = backup("backup-start", "backup-abort")
    assert rc == 13 and f"WARN: {cmd('backup-abort')}" in lines
    rc, lines, phases = backup("log-end")
    assert rc == 0 and f"WARN: {cmd('log-end')}" in lines
    assert len(archives(host.dumpdir, ct.vmid)) == 1
    # job-end: the archive exists, the job failed, job-abort ran
    rc, lines, phases = backup("job-end")
    assert rc == 11 and phases[-2:] == ["job-end", "job-abort"]
    assert len(archives(host.dumpdir, ct.vmid)) == 1
    # stop mode: the restart is cleanup, a failing pre-restart only warns and the CT comes back
    rc, lines, phases = backup("pre-restart", mode="stop")
    assert rc == 0 and f"WARN: {cmd('pre-restart', 'stop')}" in lines
    assert ct.running() and "INFO: restarting vm" in lines


def test_ctrl_c_during_the_restart_of_stop_mode_still_brings_the_ct_back(
    host: Host, tmp_path: Path
) -> None:
    """Ctrl-C reaches the terminal's whole process group. It came while stop mode started the
    container again: vzdump held on to its cleanup, but lxc-start and its pre-start hook, in
    the same group, died ('CT is locked (backup)') and the container stayed down. The start
    runs in a session of its own now, and the container comes back."""
    ct = host.create(start=True)
    script = tmp_path / "ctrl-c.sh"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = pre-restart ] || exit 0\n'
        "group=$(ps -o pgid= -p \"$(ps -o ppid= -p $$)\" | tr -d ' ')\n"
        '(sleep 0.05; kill -INT -"$group") >/dev/null 2>&1 &\n'
    )
    script.chmod(0o755)
    proc = subprocess.Popen(
        [str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
         "--script", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    _out, err = proc.communicate(timeout=120)
    text = err.decode()
    assert "INFO: restarting vm" in text, text
    assert "unable to restart" not in text, text
    assert ct.running(), text
    assert "lock:" not in ct.conf()


def test_a_guest_that_goes_down_before_the_suspend_fails_its_backup_in_words(
    host: Host, tmp_path: Path
) -> None:
    """The guest went down between suspend mode's two syncs (here its init is killed from the
    pre-stop hook): the backup failed with 'FileNotFoundError: ... freezer.state'."""
    ct = host.create(start=True)
    cgroup = CGroup(ct.vmid).path("freezer")
    script = tmp_path / "down.sh"
    script.write_text(
        '#!/bin/sh\n[ "$1" = pre-stop ] || exit 0\n'
        f"kill -9 {lxcapi.init_pid(ct.vmid)}\n"
        f"while [ -d {cgroup} ]; do sleep 0.1; done\n"
    )
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(script))  # fmt: skip
    assert res.rc != 0
    error = f"ERROR: Backup of VM {ct.vmid} failed - CT {ct.vmid} stopped during the backup"
    assert error in res.lines, res.lines
    assert not ct.running() and "lock:" not in ct.conf()
    assert not [p for p in host.dumpdir.iterdir() if p.suffix != ".log"]


def test_a_restart_that_fails_is_not_reported_as_online_again(host: Host, tmp_path: Path) -> None:
    """The restart's failure is a warning (the backup itself is done), but the log went on to
    'guest is online again' for a container that stayed down."""
    ct = host.create(start=True)
    script = tmp_path / "break-start.sh"
    conf = ct.root / f"etc/pve/lxc/{ct.vmid}.conf"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = pre-restart ] || exit 0\necho "arch: bogus" >> {conf}\n'
    )
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                 "--script", str(script))  # fmt: skip
    assert res.rc == 0, res.err
    assert any(ln.startswith(f"WARN: unable to restart CT {ct.vmid} - ") for ln in res.lines)
    assert not any("online again" in ln for ln in res.lines), res.lines
    assert not ct.running()
    assert "lock:" not in ct.conf()


def interrupted(
    proc: subprocess.Popen[bytes], at: str, stop: Callable[[list[str]], None]
) -> list[str]:
    """The lines of a vzdump that ``stop`` interrupts once it printed ``at`` (``stop`` gets
    the lines so far, and may add to them); it ends with 130."""
    try:
        seen = wait_for_line(proc, at)
        stop(seen)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = seen + err.decode().splitlines()
    assert proc.returncode == 130, lines
    return lines


def script(path: Path, body: str) -> Path:
    """An executable hook script: ``body`` between ``#!/bin/sh`` and ``exit 0``."""
    path.write_text(f"#!/bin/sh\n{body}exit 0\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("how", ["stop-option", "sigint"])
def test_interrupt(host: Host, how: str) -> None:
    """An interrupt inside a guest: its cleanup runs (the CT stop mode shut down is started
    again, lock and .dat removed), then the job aborts; the next guest is reported aborted.
    ``vzdump --stop`` delivers it as SIGTERM through the pid file."""
    first = host.create(start=True)
    random_file(first, "big", 8 << 20)
    second = host.create()
    proc = start_vzdump(str(first.vmid), str(second.vmid), "--dumpdir", str(host.dumpdir),
                        "--mode", "stop", "--bwlimit", "1024")  # fmt: skip

    def stop(_seen: list[str]) -> None:
        time.sleep(0.3)
        if how == "stop-option":
            pidfile = (host.root / "run/vzdump.pid").read_text()
            assert pidfile.startswith("UPID:") and f":{proc.pid:08X}:" in pidfile
            res = vzdump("--stop")
            assert res.rc == 0 and res.err == ""
        else:
            proc.send_signal(signal.SIGINT)

    lines = interrupted(proc, "creating vzdump archive", stop)
    assert f"ERROR: Backup of VM {first.vmid} failed - interrupted by signal" in lines
    assert lines[-2:] == ["ERROR: Backup job failed - interrupted by signal",
                          "interrupted by signal"]  # fmt: skip
    assert not any(f"Starting Backup of VM {second.vmid}" in ln for ln in lines)
    assert_clean_failure(first, host.dumpdir, running=True)
    summary = json.loads((host.root / "var/log/vzdump/vzdump.notification.json").read_text())
    guests = {g["vmid"]: g for g in summary["result"]["guests"]}
    assert guests[first.vmid]["error"] == "interrupted by signal"
    assert guests[second.vmid]["error"] == "aborted"
    assert summary["result"]["error"] == "interrupted by signal"
    assert (host.root / "run/vzdump.pid").exists()  # removed only after a successful job


def test_a_signal_lets_job_abort_run_and_the_job_report_it(host: Host) -> None:
    """SIGTERM while a --script hook waits in job-start: the signal the job was handling ended
    job-abort too (within 0.2 s), and the job's error line and its notification were lost."""
    ct = host.create()
    done = host.root / "job-abort-done"
    hook = script(
        host.root / "waiting-hook.sh",
        'if [ "$1" = job-start ]; then echo "waiting in $1"; sleep 30; fi\n'
        f'if [ "$1" = job-abort ]; then sleep 1; touch {done}; echo "abort done"; fi\n',
    )
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--script", str(hook))
    lines = interrupted(proc, "waiting in job-start", lambda _: proc.send_signal(signal.SIGTERM))
    assert done.exists() and "INFO: abort done" in lines
    assert lines[-2:] == ["ERROR: Backup job failed - interrupted by signal",
                          "interrupted by signal"]  # fmt: skip
    summary = json.loads((host.root / "var/log/vzdump/vzdump.notification.json").read_text())
    assert summary["result"]["error"] == "interrupted by signal"


def test_an_interrupt_while_frozen_still_runs_the_restart_hooks(host: Host) -> None:
    """Suspend mode interrupted during its final sync, the guest frozen: the cleanup thawed it
    but skipped pre-restart and post-restart, so a service the hook stopped in pre-stop stayed
    down. Proxmox's cleanup resumes the guest between the two, as the normal path does."""
    ct = host.create(start=True)
    calls = host.root / "calls"
    grow = ct.volume() / "srv/grown"
    hook = script(
        host.root / "restart-hook.sh",
        f'echo "$1" >> {calls}\n'
        # changed between the two syncs: the final one has 6 MiB to send at 1 MiB/s
        f'if [ "$1" = pre-stop ]; then head -c 6M /dev/urandom > {grow}; fi\n'
        'if [ "$1" = pre-stop ]; then echo "pre-stop done"; fi\n',
    )
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                        "--script", str(hook), "--bwlimit", "1024")  # fmt: skip

    def stop(_seen: list[str]) -> None:
        time.sleep(1)  # the guest frozen, its final sync under way
        proc.send_signal(signal.SIGTERM)

    interrupted(proc, "pre-stop done", stop)
    phases = calls.read_text().split()
    at = phases.index("pre-stop")
    assert phases[at + 1 : at + 3] == ["pre-restart", "post-restart"], phases
    assert_clean_failure(ct, host.dumpdir, running=True)
    assert ct.freezer_state() == "THAWED"


@pytest.mark.parametrize("how", ["signals", "stop-option"])
def test_a_second_signal_cuts_a_hanging_cleanup_hook_short(host: Host, how: str) -> None:
    """Stop mode interrupted while writing, its pre-restart hook hanging (a NAS that does not
    answer): a second signal was ignored, and the container stayed down and locked until the
    hook ended by itself. A second signal now ends the hook, and the cleanup goes on;
    ``vzdump --stop`` sends one after 5 s (it gave up after 15 s: "stopping ... failed")."""
    ct = host.create(start=True)
    random_file(ct, "big", 8 << 20)
    hook = script(
        host.root / "hanging-hook.sh",
        'if [ "$1" = pre-restart ]; then echo "pre-restart waits"; sleep 120; fi\n',
    )
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                        "--script", str(hook), "--bwlimit", "1024")  # fmt: skip
    began = time.monotonic()

    def stop(seen: list[str]) -> None:
        if how == "stop-option":
            res = vzdump("--stop")
            assert res.rc == 0 and res.err == ""
        else:
            proc.send_signal(signal.SIGTERM)
            seen += wait_for_line(proc, "pre-restart waits")
            proc.send_signal(signal.SIGTERM)

    lines = interrupted(proc, "creating vzdump archive", stop)
    assert time.monotonic() - began < 30
    assert any("pre-restart stop" in ln and "ended by a second signal" in ln for ln in lines)
    assert_clean_failure(ct, host.dumpdir, running=True)


def test_a_hook_that_cannot_run_fails_with_one_line_and_the_ct_comes_back(host: Host) -> None:
    ct = host.create(start=True)
    vm = str(ct.vmid)
    hookdir = host.root / "hooks"
    hookdir.mkdir()
    broken = hookdir / "broken.sh"
    broken.write_text("#!/nonexistent/sh\n")
    broken.chmod(0o755)
    res = vzdump(vm, "--dumpdir", str(host.dumpdir), "--mode", "stop", "--script", str(broken))
    assert res.rc == 11 and "Traceback" not in res.err, res.err
    failed = f"command '{broken} job-init' failed: No such file or directory"
    assert f"ERROR: Backup job failed - {failed}" in res.lines
    assert ct.running()
    # gone once the backup is written (a config manager replaced it): the container the
    # backup stopped is started again all the same
    vanishing = hookdir / "vanishing.sh"
    vanishing.write_text('#!/bin/sh\n[ "$1" = backup-end ] && rm -f "$0"\nexit 0\n')
    vanishing.chmod(0o755)
    res = vzdump(vm, "--dumpdir", str(host.dumpdir), "--mode", "stop", "--script", str(vanishing))
    assert "Traceback" not in res.err, res.err
    assert (
        f"command '{vanishing} pre-restart stop {vm}' failed: No such file or directory" in res.err
    )
    assert ct.running()
    assert "lock:" not in ct.conf()


@pytest.mark.parametrize("phase", ["job-start", "job-end"])
def test_job_hook_output_and_error_reach_the_notification(host: Host, phase: str) -> None:
    """§4.6: job-phase output goes into the notification. A job whose job-start failed sent a
    mail with only its command line; job-end's output never reached it."""
    from shared import paths

    ct = host.create()
    hook = host.root / "talking-hook.sh"
    hook.write_text(f'#!/bin/sh\necho "hook says $1"\n[ "$1" = {phase} ] && exit 3\nexit 0\n')
    hook.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--script", str(hook))
    assert res.rc == 11, res.err
    summary = json.loads((paths.vzdump_log_dir() / "vzdump.notification.json").read_text())
    body = summary["body"]
    error = f"ERROR: Backup job failed - command '{hook} {phase}' failed: exit code 3"
    for line in ("INFO: hook says job-init", f"INFO: hook says {phase}", error):
        assert f"\n{line}\n" in body, (line, body)
    assert body.index("hook says job-init") < body.index(error)


PAUSED_AFTER_LOCKING = """
import sys
from shared.ctconfig import store
from tests.midway import hold

real_save = store.save
paused = []

def save(conf, *args, **kwargs):
    real_save(conf, *args, **kwargs)
    if conf.lock == "backup" and not paused:
        paused.append(True)
        print("locked", flush=True)  # the config says 'lock: backup' now
        hold()  # held: the signal is noted here and acted on after

store.save = save
sys.argv = ["vzdump", *sys.argv[1:]]
from vzdump.cli import main
main()
"""


def test_a_signal_just_after_the_backup_lock_was_set_drops_it(host: Host) -> None:
    """SIGTERM just after the config was saved with 'lock: backup', before the backup marked
    the lock as its own: its cleanup left the lock and let go of its record, and every later
    backup of the container failed with 'CT is locked (backup)' until someone ran pct unlock.
    The save and the mark are one held step now."""
    from tests.midway import interrupted_midway

    ct = host.create(start=True)
    out = interrupted_midway(
        PAUSED_AFTER_LOCKING, str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
        at="locked", sig=signal.SIGTERM,
    )  # fmt: skip
    assert out == "" and archives(host.dumpdir, ct.vmid) == []  # ended there, as asked
    assert "lock:" not in ct.conf() and ct.running()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
    assert res.rc == 0, res.err
    assert len(archives(host.dumpdir, ct.vmid)) == 1


PAUSED_AFTER_THE_THAW = """
import sys
from tests.midway import hold
from vzdump.engine import modes

real_note = modes.GuestRun.note

def note(self, **changes):
    real_note(self, **changes)
    if changes == {"frozen": False}:  # suspend mode's held cleanup, after the thaw
        print("thawed", flush=True)
        hold()

modes.GuestRun.note = note
sys.argv = ["vzdump", *sys.argv[1:]]
from vzdump.cli import main
main()
"""


def test_a_signal_during_held_work_ends_the_backup_that_goes_on(host: Host) -> None:
    """SIGTERM while the suspend mode's cleanup after the thaw held it off: the signal was only
    noted, and a backup of one guest never looked at it again - it ran to the end and exited
    0, as if no one had asked it to stop. Its progress ticks end it now (as a parallel job's
    workers do), with the same cleanup as any interrupt."""
    from tests.midway import interrupted_midway

    ct = host.create(start=True)
    random_file(ct, "big", 24 << 20)
    out = interrupted_midway(
        PAUSED_AFTER_THE_THAW, str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
        "--compress", "gzip", at="thawed", sig=signal.SIGTERM,
    )  # fmt: skip
    assert out == ""
    messages = assert_clean_failure(ct, host.dumpdir, running=True)
    assert messages[-1] == f"ERROR: Backup of VM {ct.vmid} failed - interrupted by signal"


def test_a_backup_under_nohup_outlives_the_hangup(host: Host) -> None:
    """``nohup vzdump ...``: the user asked for the backup to outlive the terminal. vzdump
    installed its own HUP handler over the ignored signal, and the hangup of a closed terminal
    aborted the backup. A signal ignored by whoever started vzdump stays ignored now; TERM
    still stops it."""
    ct = host.create(start=True)
    random_file(ct, "big", 24 << 20)
    argv = ["nohup", str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir),
            "--mode", "suspend", "--compress", "gzip"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc, "creating vzdump archive")
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()
    assert len(archives(host.dumpdir, ct.vmid)) == 1 and "lock:" not in ct.conf()


REACH_HOOK = """#!/bin/sh
# at backup-end (the temp dir still full), what the container itself sees of it
if [ "$1" = backup-end ]; then
    PCT exec "$3" -- sh -c 'ls /dump/*.tmp; echo "ls=$?"; ls /dump/*.tmp/tar/etc; echo "etc=$?"
        mv /dump/*.tmp/tar /dump/moved; echo "mv=$?"' > OUT 2>&1
fi
"""


def test_a_container_that_reaches_the_dump_directory_cannot_enter_its_temp_dir(
    host: Host,
) -> None:
    """The temp dir in the dump directory was the container root's: a container with the dump
    directory bound in renamed its entries (a link for suspend mode's copy put host files in
    its backup; its own file for pct.conf made its restore privileged). The temp dir is now
    root's, 0700; tar starts inside it, entered as root."""
    host.dumpdir.chmod(0o1777)  # the container may write there (as the auditor's may)
    ct = host.create(extra=["--mp0", f"{host.dumpdir},mp=/dump"], start=True)
    out = host.root / "seen.txt"
    script = host.root / "reach-hook.sh"
    script.write_text(REACH_HOOK.replace("PCT", str(BIN / "pct")).replace("OUT", str(out)))
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(script))  # fmt: skip
    assert res.rc == 0, res.err
    seen = out.read_text()
    assert "Permission denied" in seen and "ls=0" not in seen and "mv=0" not in seen, seen
    (archive,) = archives(host.dumpdir, ct.vmid)
    conf = subprocess.run(["tar", "-xOf", str(archive), "./etc/vzdump/pct.conf"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "unprivileged: 1" in conf
    pct("stop", str(ct.vmid))


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_log_directory_that_cannot_be_written_fails_no_backup(host: Host, how: str) -> None:
    """/var/log full: every line of the guest's log raised, the first ended its backup ("OSError:
    No space left on device", no file named), the next a traceback that skipped the guests after
    it. A log file that cannot be written or made is now said once, and every guest is backed
    up (Proxmox's log writes end no backup either); the archive restores."""
    first, second = host.create(start=True), host.create()
    logdir = host.root / "var/log/vzdump"
    logdir.mkdir(parents=True, exist_ok=True)
    opts = "size=64k" + (",ro" if how == "read-only" else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(logdir)], check=True)
    try:
        if how == "full":
            subprocess.run(["dd", "if=/dev/zero", f"of={logdir}/filler", "bs=4k"],
                           capture_output=True, check=False)  # fmt: skip
        res = vzdump(str(first.vmid), str(second.vmid), "--dumpdir", str(host.dumpdir),
                     "--mode", "snapshot")  # fmt: skip
    finally:
        subprocess.run(["umount", str(logdir)], check=True)
    assert res.rc == 0 and "Traceback" not in res.err, res.err
    reason = "No space left on device" if how == "full" else "Read-only file system"
    for ct in (first, second):
        path = logdir / f"lxc-{ct.vmid}.log"
        action = "write" if how == "full" else "create"
        assert f"WARN: unable to {action} log file '{path}' - {reason}" in res.lines, res.lines
        assert any(ln.startswith(f"INFO: Finished Backup of VM {ct.vmid} (") for ln in res.lines)
        assert len(archives(host.dumpdir, ct.vmid)) == 1
    assert first.running() and "lock:" not in first.conf()
    restored = host.new_vmid()
    pct("restore", str(restored), str(archives(host.dumpdir, first.vmid)[0]))
    pct("start", str(restored))
    assert pct("exec", str(restored), "--", "cat", "/etc/hostname").strip() == "ct" + str(
        first.vmid % 1000
    )
    pct("stop", str(restored))
