"""pct startall/stopall on real containers: order and delays (timed from the kernel's process
start times), locked and running ones skipped, reverse order and hard stop after 'down'; and
the ctkit-guests.service unit."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import systemd
from shared.runtime import lxcapi
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc

TICKS = os.sysconf("SC_CLK_TCK")


def started_at(vmid: int) -> float:
    """When the CT's init started, in seconds since boot (clock ticks of /proc/<pid>/stat)."""
    pid = lxcapi.init_pid(vmid)
    assert pid is not None
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19]) / TICKS


def add(ctroot: Path, vmid: int, text: str) -> None:
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write(text)


def starting(text: str) -> list[int]:
    return [int(ln.split()[-1]) for ln in text.splitlines() if "Starting CT" in ln]


def test_startall_and_stopall_follow_order_delays_and_skip_rules(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    first, second, last, off, locked, running = (new_vmid() for _ in range(6))
    for vmid in (first, second, last, off, locked, running):
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
    add(ctroot, first, "onboot: 1\nstartup: order=1,up=2\n")
    add(ctroot, second, "onboot: 1\nstartup: order=2,up=1,down=1\nlxc.signal.halt: SIGWINCH\n")
    add(ctroot, last, "onboot: 1\n")
    add(ctroot, locked, "onboot: 1\nlock: snapshot\n")
    add(ctroot, off, "lock: backup\n")  # left over by a crash: removed at startall
    add(ctroot, running, "onboot: 1\nstartup: order=1\n")
    pct("start", running)

    began = time.monotonic()
    res = pct("startall")
    elapsed = time.monotonic() - began
    assert starting(res.err) == [first, second, last]
    assert f"Skipping CT {locked}: CT is locked (snapshot)" in res.err
    assert f"WARN: removed left over backup lock from '{off}'!" in res.err
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{off}.conf").read_text()
    assert "Waiting for 2 seconds (startup delay)" in res.err
    for vmid in (first, second, last, running):
        assert lxcapi.is_running(vmid)
    assert not lxcapi.is_running(off) and not lxcapi.is_running(locked)
    assert started_at(second) - started_at(first) >= 2 - 0.05
    assert started_at(last) - started_at(second) >= 1 - 0.05
    assert 3 <= elapsed < 3 + 30
    log = (ctroot / "var/log/ctkit/guests.log").read_text()
    assert f"INFO: Starting CT {first}" in log and f"CT {last} started" in log

    res = pct("startall", "--force", "--vms", f"{off},{first}")  # first runs already
    assert starting(res.err) == [off]

    began = time.monotonic()
    res = pct("stopall", "--timeout", "20")
    elapsed = time.monotonic() - began
    stopping = [int(ln.split()[3]) for ln in res.err.splitlines() if "Stopping CT" in ln]
    # highest order first (no order = last to start, first to stop), by id within an order
    assert stopping[:3] == [max(off, last), min(off, last), second]
    assert set(stopping[3:]) == {first, running}
    # 'second' ignores the halt signal: killed after its own 'down' of 1 s, not the 20 s timeout
    assert f"Stopping CT {second} (timeout = 1 seconds)" in res.err
    assert elapsed < 15
    for vmid in (first, second, last, off, running):
        assert not lxcapi.is_running(vmid)


def test_startall_fails_when_a_container_does_not_start(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    good, bad = new_vmid(), new_vmid()
    for vmid in (good, bad):
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
        add(ctroot, vmid, "onboot: 1\n")
    add(ctroot, bad, "mp0: /nonexistent-ctkit-source,mp=/x\n")
    res = pct("startall", check=False)
    assert res.rc != 0
    assert f"Starting CT {bad} failed: " in res.err
    assert res.err.strip().splitlines()[-1] == f"unable to start 1 container(s): {bad}"
    assert lxcapi.is_running(good)
    log = ctroot / "var/log/ctkit/guests.log"
    assert _last(log) == ["pct startall", f"TASK ERROR: unable to start 1 container(s): {bad}"]
    pct("stopall")
    assert not lxcapi.is_running(good)
    assert _last(log) == ["pct stopall", "TASK OK"]


def _last(log: Path) -> list[str]:
    """The first and the last line of the log's last run, without their time stamps."""
    lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]
    begun = max(i for i, line in enumerate(lines) if line in ("pct startall", "pct stopall"))
    return [lines[begun], lines[-1]]


def test_an_interrupted_startall_says_so_in_its_log(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """Killed during an 'up' delay (a shutdown soon after boot), the log ended with the delay,
    as a run still waiting does."""
    from tests.pct.conftest import PCT, wait_while_running

    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--onboot", "1")
    add(ctroot, vmid, "startup: up=60\n")
    startall = subprocess.Popen([str(PCT), "startall"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    log = ctroot / "var/log/ctkit/guests.log"
    waiting = "Waiting for 60 seconds (startup delay)"
    wait_while_running(startall, lambda: log.exists() and waiting in log.read_text(), "up", 30)
    startall.terminate()
    out, _ = startall.communicate(timeout=30)
    assert startall.returncode == 130, out
    assert _last(log) == ["pct startall", "TASK ERROR: interrupted by signal"]
    pct("stop", vmid)


def test_a_log_directory_that_cannot_be_written_starts_the_guests_all_the_same(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """A read-only or full /var/log at boot made startall fail before it started anything."""
    vmid = new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    add(ctroot, vmid, "onboot: 1\n")
    logdir = ctroot / "var/log/ctkit"
    logdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(logdir)], check=True)
    try:
        res = pct("startall")
        assert lxcapi.is_running(vmid), res.err
        warning = f"unable to create log file '{logdir}/guests.log' - Read-only file system"
        assert f"WARN: {warning}" in res.err.splitlines(), res.err
        pct("stopall")
        assert not lxcapi.is_running(vmid)
    finally:
        subprocess.run(["umount", str(logdir)], check=True)


def test_guests_unit_is_written_and_verifies(ctroot: Path, pct: Pct) -> None:
    res = pct("autostart", "install")
    unit = ctroot / "etc/systemd/system/ctkit-guests.service"
    assert res.out == f"wrote {unit}\n"
    text = unit.read_text()
    assert "ExecStart=" in text and text.split("ExecStart=")[1].split()[1] == "startall"
    # a running backup (started by hand or by cron) is stopped first, then the containers; also
    # when systemd cancels a startall still under way (ExecStopPost=, not ExecStop=)
    stops = [line.split("=", 1)[1].split() for line in text.splitlines()
             if line.startswith("ExecStop")]  # fmt: skip
    assert "\nExecStopPost=" in text and "\nExecStop=" not in text
    assert [words[1:] for words in stops] == [["--stop"], ["stopall"]]
    vzdump = Path(stops[0][0].removeprefix("-"))
    assert vzdump.name == "vzdump" and os.access(vzdump, os.X_OK)
    assert "RefuseManualStop=yes" in text  # a `systemctl restart` would stop every container
    assert "systemctl enable ctkit-guests.service" in res.err  # systemd is not PID 1 here
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    assert systemd.GUESTS_UNIT in systemd.UNITS
    res = pct("autostart", "remove")
    assert res.out == f"removed {unit}\n" and not unit.exists()


def test_startall_first_recovers_what_a_killed_migration_left(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """A migration that died with the host had stopped and locked an onboot container: startall
    undoes that (as any command would), so the container comes up instead of being skipped."""
    from shared.runtime import migration
    from tests.shared.runtime.test_migration import dead_record

    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--onboot", "1")
    add(ctroot, vmid, "lock: migrate\n")
    data = {"vmid": vmid, "remote": "far", "phase": "copy", "stopped": True}
    dead_record(migration.outgoing_record(vmid), {**data, "snapshots": {}})
    res = pct("startall", "--vms", vmid)
    assert "Skipping" not in res.text, res.text
    assert lxcapi.is_running(vmid)
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    pct("stop", vmid)


def test_one_broken_config_keeps_no_other_container_from_starting_or_stopping(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """A bad value in one config ended the whole startall (nothing started at boot) and the
    whole stopall (nothing stopped at shutdown)."""
    good, broken = new_vmid(), new_vmid()
    for vmid in (good, broken):
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
        add(ctroot, vmid, "onboot: 1\n")
    add(ctroot, broken, "startup: order=x\n")
    res = pct("startall", check=False)
    assert res.rc != 0 and f"ERROR: Starting CT {broken} failed: " in res.err, res.err
    assert lxcapi.is_running(good)
    res = pct("stopall", "--timeout", "5", check=False)
    assert res.rc != 0 and f"ERROR: Stopping CT {broken} failed: " in res.err, res.err
    assert not lxcapi.is_running(good)


def test_a_suspended_container_refuses_exec_instead_of_hanging(
    pct: Pct, vmid: int, busybox_template: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    pct("suspend", vmid)
    try:
        res = pct("exec", vmid, "--", "true", check=False, timeout=20)
        assert res.rc != 0 and f"CT {vmid} is suspended - resume it first" in res.err
    finally:
        pct("resume", vmid)
    pct("stop", vmid)


def test_stopall_shuts_an_order_down_in_parallel_whatever_the_cpus(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """The batch was CPUs - 1 wide: one at a time on this 2-core host, so a host's shutdown
    took the sum of every container's timeout."""
    slow = [new_vmid() for _ in range(3)]
    for vmid in slow:
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
        add(ctroot, vmid, "startup: down=2\nlxc.signal.halt: SIGWINCH\n")  # ignores the halt
        pct("start", vmid)
    res = pct("stopall", "--vms", ",".join(map(str, slow)))
    # one 2 s wait for all three, not three: every shutdown began before the first one ended
    # (the order of the lines, not a clock, which a loaded host stretches)
    lines = res.text.splitlines()
    began = [i for i, line in enumerate(lines) if "Stopping CT" in line]
    ended = [i for i, line in enumerate(lines) if re.search(r"CT \d+ stopped", line)]
    assert len(began) == len(ended) == 3 and max(began) < min(ended), res.text
    # and they ended together (one after the other, 2 s apart each: 4 s from first to last)
    log = (ctroot / "var/log/ctkit/guests.log").read_text()
    stamps = [
        dt.datetime.fromisoformat(m.group(1))
        for m in re.finditer(r"^(\S+ \S+) .*CT \d+ stopped$", log, re.MULTILINE)
    ]
    assert len(stamps) == 3 and (max(stamps) - min(stamps)).total_seconds() < 3, log
    assert not any(lxcapi.is_running(vmid) for vmid in slow)


def test_startall_starts_a_container_left_mounted(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """A power cut during a `pct mount` leaves `lock: mounted` and nothing mounted; `pct start`
    takes such a container (as Proxmox's does), and startall skipped it: it stayed down."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--onboot", "1")
    add(ctroot, vmid, "lock: mounted\n")
    res = pct("startall", "--vms", vmid)
    assert f"CT {vmid} started" in res.text and "Skipping" not in res.text, res.text
    assert lxcapi.is_running(vmid)
    pct("stop", vmid)


def test_stopall_starts_the_next_shutdown_as_soon_as_one_ends(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """Two workers for three containers of one order, the first of them ignoring the halt:
    the third shut down only once the first had been killed after its 'down' (fixed batches,
    one 'down' more per slow guest); each result was logged in the order the shutdowns began."""
    vmids = sorted(new_vmid() for _ in range(3))
    slow, fast = vmids[-1], vmids[:-1]  # stopall begins with the highest id
    for vmid in vmids:
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
        if vmid == slow:
            add(ctroot, slow, "startup: down=4\nlxc.signal.halt: SIGWINCH\n")  # ignores the halt
        pct("start", vmid)
    res = pct("stopall", "--vms", ",".join(map(str, vmids)), "--max-workers", "2")
    lines = res.text.splitlines()

    def at(text: str) -> int:
        found = [i for i, line in enumerate(lines) if line.endswith(text)]
        assert len(found) == 1, res.text
        return found[0]

    assert at(f"Stopping CT {fast[0]} (timeout = 180 seconds)") < at(f"CT {slow} stopped")
    assert at(f"CT {fast[1]} stopped") < at(f"CT {slow} stopped")
    assert at(f"CT {fast[0]} stopped") < at(f"CT {slow} stopped")
    assert not any(lxcapi.is_running(vmid) for vmid in vmids)


def test_a_killed_stopall_leaves_no_shutdown_holding_the_lock(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """stopall killed on its own (kill -9 of its pid): its forked shutdown of a guest that
    ignores the halt went on, holding the container's lock until its 'down' (60 s here), and a
    `pct stop` meanwhile failed on the lock. Now the shutdown ends with stopall."""
    from shared.runtime import stopper
    from tests.pct.conftest import PCT, wait_while_running

    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    add(ctroot, vmid, "startup: down=60\nlxc.signal.halt: SIGWINCH\n")  # ignores the halt
    pct("start", vmid)
    stopall = subprocess.Popen([str(PCT), "stopall", "--vms", str(vmid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_while_running(stopall, lambda: stopper.current(vmid) is not None, "its shutdown", 30)
    stopall.kill()
    stopall.wait(timeout=30)
    began = time.monotonic()
    pct("stop", vmid)  # waits for the lock up to its own limit, and fails past it
    assert time.monotonic() - began < 20
    assert not lxcapi.is_running(vmid)


def test_a_guest_stopped_by_an_overruling_stop_counts_as_stopped(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """A ``pct stop --overrule-shutdown`` ends stopall's shutdown of a guest: the guest is down
    all the same, and stopall said its stop had failed (``KeyboardInterrupt()``), exit 11."""
    from shared.runtime import stopper
    from tests.pct.conftest import PCT, wait_while_running

    vmid = new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    add(ctroot, vmid, "lxc.signal.halt: SIGWINCH\n")  # ignores the halt
    pct("start", vmid)
    stopall = subprocess.Popen(
        [str(PCT), "stopall", "--vms", str(vmid), "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_while_running(stopall, lambda: stopper.current(vmid) is not None, "its shutdown", 30)
    pct("stop", vmid, "--overrule-shutdown", "1")
    out, _err = stopall.communicate(timeout=30)
    assert stopall.returncode == 0, out
    assert f"CT {vmid} stopped" in out and "failed" not in out
    assert not lxcapi.is_running(vmid)


def test_a_repeated_vms_option_takes_every_list(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path
) -> None:
    """``--vms A --vms B`` acted on B alone, exit 0 (Proxmox joins the lists)."""
    vmids = [new_vmid(), new_vmid()]
    for vmid in vmids:
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
    res = pct("startall", "--force", "--vms", vmids[0], "--vms", vmids[1])
    assert starting(res.text) == vmids and all(lxcapi.is_running(v) for v in vmids)
    pct("stopall", "--vms", vmids[1], "-vms", vmids[0])
    assert not any(lxcapi.is_running(v) for v in vmids)


@pytest.mark.parametrize(("vms", "why"), [
    ("abc", "type check ('integer') failed - got 'abc'"),
    ("101,99", "invalid format - value does not look like a valid VM ID"),
])  # fmt: skip
def test_a_bad_vms_list_names_the_option(pct: Pct, vms: str, why: str) -> None:
    """The error said ``parameter: ...``, as for an option it could not name."""
    for command in ("startall", "stopall"):
        res = pct(command, "--vms", vms, check=False)
        assert res.rc == 2 and f"\nvms: {why}\n" in res.err, res.err
