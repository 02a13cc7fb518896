"""start, stop, shutdown, reboot, guest reboot, exec, status and list of real containers
(spec pct.md §1, §8, §9 cases 10–13, 43, 46, 48, 49)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import paths
from shared.runtime import lxcapi, lxccmd
from shared.testbed import cleanup_root, monitor_pid
from tests.pct.conftest import (
    PCT,
    Pct,
    holding_tool,
    leftovers,
    sigkill_group_when,
    stop_by_itself,
    wait_for,
    wait_while_running,
)

pytestmark = pytest.mark.lxc

Images = Callable[[int], Path]


@pytest.fixture
def ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    """A stopped unprivileged CT on a directory volume (the fastest kind)."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    return vmid


def append_conf(ctroot: Path, vmid: int, text: str) -> None:
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write(text)


def test_raw_rootfs_is_released_on_stop_and_when_the_ct_stops_by_itself(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    pct("start", vmid)
    assert pct("status", vmid).out == "status: running\n"
    assert pct("exec", vmid, "--", "hostname").out == f"CT{vmid}\n"
    # the CT's mounts live in its monitor's namespace, the loop device is global
    assert any("loop" in item for item in leftovers(ctroot, wait=0))
    pct("stop", vmid)
    assert pct("status", vmid).out == "status: stopped\n"
    assert leftovers(ctroot) == []
    # the test init exits on SIGUSR2: sent from the host (a `kill` run inside may itself be
    # killed with the container's processes before it exits, and report 137)
    stop_by_itself(pct, vmid)
    assert leftovers(ctroot) == []  # the post-stop hook cleaned up


def test_cases_10_12_43_state_checks_and_exec(pct: Pct, ct: int, ctroot: Path) -> None:
    for cmd, message in (
        ("stop", f"CT {ct} not running"),
        ("shutdown", f"CT {ct} not running"),
        ("reboot", f"VM {ct} not running"),
        ("exec", f"container '{ct}' not running!"),
    ):
        res = pct(cmd, ct, *(["--", "true"] if cmd == "exec" else []), check=False)
        assert res.rc != 0 and res.err == message + "\n", cmd
    pct("start", ct)
    res = pct("start", ct, check=False)
    assert res.rc != 0 and res.err == f"CT {ct} already running\n"
    res = pct("exec", ct, check=False)
    assert res.rc != 0 and res.err == "missing command\n"
    res = pct("exec", ct, "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (res.rc, res.out, res.err) == (7, "out\n", "err\n")
    res = pct("exec", ct, "--", "ls", "-d", "/etc")  # options of the command stay its own
    assert res.out == "/etc\n"
    pct("stop", ct)
    append_conf(ctroot, ct, "template: 1\n")
    res = pct("start", ct, check=False)
    assert res.rc != 0 and res.err == "you can't start a CT if it's a template\n"


@contextlib.contextmanager
def starting_monitor(vmid: int) -> Iterator[None]:
    """LXC's command socket of ``vmid`` as its monitor answers while the pre-start hook runs
    (state STARTING, no cgroup made yet): every other command is refused."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(b"\0" + lxcapi.socket_name(vmid)[1:].encode())
    sock.listen(4)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                with conn:
                    cmd = struct.unpack("@iiP", conn.recv(16, socket.MSG_WAITALL))[0]
                    ok = cmd == lxccmd.GET_STATE
                    conn.sendall(struct.pack("@iiP", 0 if ok else -1, 0, 1 if ok else 0))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield
    finally:
        sock.close()


def test_a_container_still_starting_is_one_line_error(pct: Pct, ct: int) -> None:
    """Its monitor is up (status running) while the pre-start hook mounts the volumes, an
    ext4's multi-mount check can make that a minute: exec, enter and suspend read its missing
    freezer file and ended in a traceback."""
    pct("start", ct)  # its LXC config generated, as a start does first
    pct("stop", ct)
    with starting_monitor(ct):
        assert pct("status", ct).out == "status: running\n"
        for args in (("exec", ct, "--", "true"), ("enter", ct), ("suspend", ct), ("resume", ct)):
            res = pct(*args, check=False)
            assert (res.rc, res.err) == (6, f"CT {ct} is still starting - try again once it runs\n")


def test_the_environment_reaches_the_init(pct: Pct, ct: int) -> None:
    """``env`` became ``lxc.environment.runtime``, which this host's LXC 5 refuses: the
    container never started (``Unsupported config key``)."""
    pct("set", ct, "--env", "GREETING=hello world")
    pct("start", ct)
    environ = pct("exec", ct, "--", "cat", "/proc/1/environ").out.split("\0")
    assert "GREETING=hello world" in environ
    pct("stop", ct)


def test_hookscripts_without_an_interpreter_line_or_with_crlf(
    pct: Pct, ct: int, ctroot: Path, tmp_path: Path
) -> None:
    """A hookscript without ``#!`` (Proxmox runs it through /bin/sh) or with CRLF line ends
    ended ``pct start``/``stop`` in a Python traceback: a running container could not be
    stopped. Its stdin is empty (a ``read`` took what the user typed)."""
    snippets = ctroot / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "phases"
    hook = snippets / "plain.sh"
    hook.write_text(f'read line; echo "$2 ${{line:-empty}}" >> {marker}\n')
    hook.chmod(0o755)
    pct("set", ct, "--hookscript", "local:snippets/plain.sh")
    pct("start", ct, stdin="typed\n")
    hook.write_bytes(b"#!/bin/sh\r\nexit 0\r\n")  # as saved by a Windows editor
    res = pct("stop", ct)  # pre-stop's failure is a warning: the container stops
    assert f"hookscript error for {ct} on pre-stop: command '{hook} {ct} pre-stop' failed: " \
        "No such file or directory" in res.text, res.text  # fmt: skip
    assert "Traceback" not in res.text and not lxcapi.is_running(ct)
    res = pct("start", ct, check=False)  # pre-start's is fatal, in one line
    assert res.rc != 0 and "Traceback" not in res.text
    assert f"hookscript error for {ct} on pre-start: command " in res.err
    assert marker.read_text().splitlines()[:2] == ["pre-start empty", "post-start empty"]


def test_a_relative_root_is_the_same_root(ct: int, ctroot: Path) -> None:
    """``CTKIT_ROOT=root pct ...`` from the root's parent: a running container showed as
    stopped (LXC finds it by its absolute path), and a start failed in its pre-start hook."""

    def pct_here(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PCT), *map(str, args)], cwd=ctroot.parent,
                              env=dict(os.environ, CTKIT_ROOT=ctroot.name),
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    assert pct_here("start", ct).returncode == 0
    try:
        assert pct_here("status", ct).stdout == "status: running\n"
        assert pct_here("exec", ct, "--", "true").returncode == 0
    finally:
        assert pct_here("stop", ct).returncode == 0
    assert pct_here("status", ct).stdout == "status: stopped\n"


def test_a_root_below_a_directory_with_a_space(
    vmid: int, busybox_template: Path, tmp_path: Path
) -> None:
    """LXC runs the hooks with ``sh -c``: under ``/var/tmp/ctkit sp`` the pre-start hook got
    the root cut in two, and every start failed."""
    root = tmp_path / "a root" / "r"
    root.mkdir(parents=True)
    env = dict(os.environ, CTKIT_ROOT=str(root))

    def pct_there(*args: object) -> str:
        proc = subprocess.run([str(PCT), *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 0, f"pct {args[0]}: {proc.stderr}"
        return proc.stdout

    try:
        pct_there("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", 0)
        pct_there("start", vmid)
        assert pct_there("status", vmid) == "status: running\n"
        pct_there("exec", vmid, "--", "true")
        pct_there("stop", vmid)
        pct_there("destroy", vmid)
    finally:
        assert cleanup_root(root) == []


def test_missing_ct(pct: Pct, vmid: int, tmp_path: Path) -> None:
    message = f"Configuration file 'nodes/{paths.node_name()}/lxc/{vmid}.conf' does not exist\n"
    for args in (("status",), ("start",), ("exec", "--", "true"), ("df",), ("resize",)):
        extra = ["rootfs", "+1G"] if args[0] == "resize" else []
        res = pct(args[0], vmid, *args[1:], *extra, check=False)
        assert res.rc == 3 and res.err == message, args


def test_enter_and_console(pct: Pct, ct: int) -> None:
    for cmd in ("enter", "console"):
        res = pct(cmd, ct, check=False)
        assert res.rc != 0 and res.err == f"container '{ct}' not running!\n"
    pct("start", ct)
    res = pct("enter", ct, stdin="hostname; exit 3\n", check=False)
    assert (res.rc, res.out) == (3, f"CT{ct}\n")


def test_reboot_applies_pending_changes_and_shutdown_is_clean(
    pct: Pct, ct: int, conf_text: Callable[[int], str], ctroot: Path
) -> None:
    pct("start", ct)
    pid = lxcapi.init_pid(ct)
    pct("set", ct, "--tty", "4")
    assert "[pve:pending]\ntty: 4\n" in conf_text(ct)
    pct("reboot", ct)
    assert pct("status", ct).out == "status: running\n"
    assert lxcapi.init_pid(ct) != pid
    assert "pve:pending" not in conf_text(ct) and "tty: 4\n" in conf_text(ct)
    started = time.monotonic()
    pct("shutdown", ct, "--timeout", "10")
    assert time.monotonic() - started < 8  # the init honours SIGPWR at once
    assert pct("status", ct).out == "status: stopped\n"
    assert leftovers(ctroot) == []


SLOW_HALT_INIT = """#!/bin/sh
trap 'sleep 2; exit 0' PWR
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""


def test_a_slow_shutdown_leaves_the_other_threads_running(
    pct: Pct, ct: int, images: Images
) -> None:
    """python-lxc's shutdown(timeout) held the GIL until the guest was down: in a parallel
    stop-mode backup every other worker, and the signal handling, stood still meanwhile."""
    from shared.runtime import lifecycle

    (images(ct) / f"subvol-{ct}-disk-0.subvol/sbin/init").write_text(SLOW_HALT_INIT)
    pct("start", ct)
    failed: list[BaseException] = []

    def down() -> None:
        try:
            lifecycle.shutdown(ct, timeout=20, log=lambda _line: None)
        except BaseException as err:  # handed to the test's thread
            failed.append(err)

    worker = threading.Thread(target=down)
    started, ticks = time.monotonic(), 0
    worker.start()
    while worker.is_alive():
        time.sleep(0.05)
        ticks += 1
    elapsed = time.monotonic() - started
    assert failed == []
    assert elapsed >= 1.5  # the guest took its time to go down
    assert ticks >= elapsed / 0.05 / 2, (ticks, elapsed)  # and this thread went on meanwhile
    assert pct("status", ct).out == "status: stopped\n"


HALT_NOTED_INIT = """#!/bin/sh
trap 'touch /halting; sleep 2; exit 0' PWR
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""
VZDUMP = Path(PCT).parent / "vzdump"


def test_a_backup_during_a_reboot_finds_the_container_running(
    pct: Pct, ct: int, images: Images, tmp_path: Path
) -> None:
    """The reboot holds the config lock from its shutdown through its start, as Proxmox's: a
    stop-mode backup made meanwhile waits, then stops, backs up and starts the container. It
    used to get in between: it found the container down and backed it up as it was, and the
    reboot's start was refused (``CT is locked (backup)``): the container stayed stopped."""
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    (rootfs / "sbin/init").write_text(HALT_NOTED_INIT)
    pct("start", ct)
    old_pid = lxcapi.init_pid(ct)
    reboot = subprocess.Popen(
        [str(PCT), "reboot", str(ct)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_while_running(reboot, (rootfs / "halting").exists, "the halt signal", 30)
    dump = tmp_path / "dump"
    dump.mkdir()
    backup = subprocess.run(
        [str(VZDUMP), str(ct), "--mode", "stop", "--dumpdir", str(dump)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out, err = reboot.communicate(timeout=60)
    assert reboot.returncode == 0, out + err
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "stopping virtual guest" in backup.stdout + backup.stderr  # it found it running
    assert len(list(dump.glob(f"vzdump-lxc-{ct}-*.tar"))) == 1
    assert pct("status", ct).out == "status: running\n"
    assert lxcapi.init_pid(ct) != old_pid
    assert "lock:" not in pct("config", ct).out


def test_stop_overrules_a_shutdown_that_holds_the_lock(pct: Pct, ct: int, ctroot: Path) -> None:
    """A shutdown holds the config lock until the container is down (at most its timeout); a
    ``pct stop --overrule-shutdown`` aborts it and stops the container at once."""
    from shared.runtime import stopper

    append_conf(ctroot, ct, "lxc.signal.halt: SIGWINCH\n")  # the init ignores the halt
    pct("start", ct)
    shutdown = subprocess.Popen(
        [str(PCT), "shutdown", str(ct), "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_for(lambda: stopper.current(ct) == (shutdown.pid, stopper.SHUTDOWN), 30)
    began = time.monotonic()
    res = pct("stop", ct, "--overrule-shutdown", "1")
    assert f"overruled vzshutdown tasks: {shutdown.pid}\n" in res.text
    assert time.monotonic() - began < 8
    _out, err = shutdown.communicate(timeout=30)
    assert shutdown.returncode == 130 and err == "interrupted by signal\n", err
    assert pct("status", ct).out == "status: stopped\n"
    assert stopper.current(ct) is None and not stopper.note_file(ct).exists()
    assert leftovers(ctroot) == []


def phase_hookscript(ctroot: Path, log: Path, post_stop: str = "") -> str:
    """A hookscript that logs each phase (``<phase>`` on entering, ``<phase> done`` after
    running ``post_stop`` in that phase); returns its volume id."""
    snippets = ctroot / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    hook = snippets / "phases.sh"
    hook.write_text(
        f'#!/bin/sh\necho "$2" >> {log}\n'
        f'[ "$2" = post-stop ] && {{ {post_stop or "true"}; echo "$2 done" >> {log}; }}\nexit 0\n'
    )
    hook.chmod(0o755)
    return "local:snippets/phases.sh"


@pytest.mark.parametrize("how", ["KILL", "KILL-then-start", "INT"])
def test_a_reboot_stopped_while_the_guest_goes_down_leaves_it_running(
    pct: Pct, ct: int, images: Images, how: str
) -> None:
    """Killed (or interrupted) between its shutdown and its start, ``pct reboot`` left the
    container down for good. Killed, it leaves a note that the next command acts on;
    interrupted, it starts the container again itself, once the guest is down."""
    rootfs = images(ct) / f"subvol-{ct}-disk-0.subvol"
    (rootfs / "sbin/init").write_text(HALT_NOTED_INIT)
    pct("start", ct)
    old_pid = lxcapi.init_pid(ct)
    reboot = subprocess.Popen(
        [str(PCT), "reboot", str(ct)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_while_running(reboot, (rootfs / "halting").exists, "the halt signal", 30)
        if how.startswith("KILL"):
            os.kill(reboot.pid, signal.SIGKILL)  # pct alone, as kill -9 or the OOM killer
        else:
            os.killpg(reboot.pid, signal.SIGINT)  # Ctrl-C
        out, err = reboot.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(reboot.pid, signal.SIGKILL)
        reboot.wait()
    if how.startswith("KILL"):
        # waits for the guest to be down, then starts it (and pct start says no more)
        res = pct("start" if how.endswith("start") else "list", *([ct] if "start" in how else []))
        assert f"CT {ct}: pct reboot ended without starting it again - recovering" in res.text
        assert f"CT {ct}: restarted the container pct reboot had stopped" in res.text, res.text
        assert pct("list").text.count("recovering") == 0  # once
    else:
        assert reboot.returncode == 130, out + err
        assert "interrupted by signal" in err
    assert pct("status", ct).out == "status: running\n"
    assert lxcapi.init_pid(ct) not in (None, old_pid)  # started again, not still going down
    assert pct("config", ct).out.count("lock:") == 0


def test_shutdown_and_reboot_return_once_the_post_stop_hooks_are_done(
    pct: Pct, ct: int, ctroot: Path, tmp_path: Path
) -> None:
    """After a clean exit LXC closes the monitor's command socket first and runs the post-stop
    hooks after: shutdown returned (and let go of the lock) while they ran, and a reboot's start
    came before the old run's post-stop hookscript."""
    log = tmp_path / "phases.log"
    pct("set", ct, "--hookscript", phase_hookscript(ctroot, log, "sleep 2"))
    pct("start", ct)
    pct("shutdown", ct)
    assert log.read_text().splitlines()[-2:] == ["post-stop", "post-stop done"]
    pct("start", ct)
    log.write_text("")
    pct("reboot", ct)
    assert log.read_text().splitlines() == [
        "pre-stop", "post-stop", "post-stop done", "pre-start", "post-start",
    ]  # fmt: skip


def test_a_stop_interrupted_while_the_hooks_run_still_applies_the_pending_changes(
    pct: Pct, ct: int, ctroot: Path, tmp_path: Path, conf_text: Callable[[int], str]
) -> None:
    """The post-stop hook leaves the pending changes to the stop that holds the lock; a stop
    ended by a signal meanwhile (a pct stop --overrule-shutdown does that to a shutdown) left
    them pending until the next start."""
    log = tmp_path / "phases.log"
    pct("set", ct, "--hookscript", phase_hookscript(ctroot, log, "sleep 3"))
    pct("start", ct)
    pct("set", ct, "--tty", "4")
    assert "[pve:pending]\ntty: 4\n" in conf_text(ct)
    stop = subprocess.Popen(
        [str(PCT), "stop", str(ct)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert wait_for(lambda: log.exists() and "post-stop" in log.read_text().split("\n"), 30)
    stop.send_signal(signal.SIGTERM)
    _out, err = stop.communicate(timeout=30)
    assert stop.returncode == 130 and err == "interrupted by signal\n", err
    assert pct("status", ct).out == "status: stopped\n"
    assert "pve:pending" not in conf_text(ct) and "tty: 4\n" in conf_text(ct)


def test_a_plain_stop_applies_the_pending_changes_without_waiting_for_its_hook(
    pct: Pct, ct: int, conf_text: Callable[[int], str]
) -> None:
    """The post-stop hook leaves the pending changes to the stop that holds the lock (the
    stop's note): waiting for that lock, it held every stop for 10 s."""
    pct("start", ct)
    pct("set", ct, "--tty", "4")
    assert "[pve:pending]\ntty: 4\n" in conf_text(ct)
    began = time.monotonic()
    pct("stop", ct)
    assert time.monotonic() - began < 5
    assert "pve:pending" not in conf_text(ct) and "tty: 4\n" in conf_text(ct)


def test_cases_48_49_ostype_mismatch_warns_and_pve_ignore_is_honoured(
    pct: Pct, vmid: int, debian_template: Path, images: Images, ctroot: Path
) -> None:
    pct("create", vmid, debian_template, "--rootfs", "local:0", "--hostname", "first")
    etc = images(vmid) / f"subvol-{vmid}-disk-0.subvol/etc"
    hosts = (etc / "hosts").read_bytes()
    (etc / ".pve-ignore.hosts").touch()
    pct("set", vmid, "--hostname", "second")
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    conf.write_text(conf.read_text().replace("ostype: debian", "ostype: centos"))
    res = pct("start", vmid)
    assert "got unexpected ostype (debian != centos)" in res.text
    assert pct("status", vmid).out == "status: running\n"
    assert (etc / "hosts").read_bytes() == hosts
    assert pct("exec", vmid, "--", "hostname").out == "second\n"


def test_case_11_locks(pct: Pct, ct: int, ctroot: Path) -> None:
    append_conf(ctroot, ct, "lock: backup\n")
    res = pct("start", ct, check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    pct("start", ct, "--skiplock")
    res = pct("stop", ct, check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    pct("stop", ct, "--skiplock")
    pct("unlock", ct)
    append_conf(ctroot, ct, "lock: mounted\n")
    pct("start", ct)  # 'mounted' does not block start/stop
    pct("stop", ct)


def test_case_13_ct_ignoring_the_halt_signal(pct: Pct, ct: int, ctroot: Path) -> None:
    append_conf(ctroot, ct, "lxc.signal.halt: SIGWINCH\n")
    pct("start", ct)
    res = pct("shutdown", ct, "--timeout", "1", check=False)
    assert res.rc != 0 and res.err == "container did not stop\n"
    assert pct("status", ct).out == "status: running\n"
    pct("shutdown", ct, "--timeout", "1", "--forceStop", "1")
    assert pct("status", ct).out == "status: stopped\n"
    assert leftovers(ctroot) == []


def test_guest_initiated_reboot_restarts_with_pending_applied(
    pct: Pct, ct: int, conf_text: Callable[[int], str]
) -> None:
    pct("start", ct)
    old_pid = lxcapi.init_pid(ct)
    pct("set", ct, "--hostname", "renamed", "--tty", "3")
    assert "[pve:pending]\ntty: 3\n" in conf_text(ct)
    pct("exec", ct, "--", "reboot", "-f", check=False)

    def restarted() -> bool:
        pid = lxcapi.init_pid(ct) if lxcapi.is_running(ct) else None
        return pid is not None and pid != old_pid

    assert wait_for(restarted), "CT did not come back after a guest reboot"
    assert wait_for(lambda: pct("exec", ct, "--", "true", check=False).rc == 0)
    assert pct("exec", ct, "--", "hostname").out == "renamed\n"
    assert "pve:pending" not in conf_text(ct) and "tty: 3\n" in conf_text(ct)


@pytest.mark.parametrize("mode", ["snapshot", "stop"])
def test_a_guest_that_reboots_under_a_backups_lock_comes_back(
    pct: Pct, ct: int, ctroot: Path, mode: str
) -> None:
    """A guest rebooted itself while a backup held ``lock: backup`` (the state a backup holds:
    its lock and its live owner record, here this test's): the restart was refused five times
    and the guest stayed down. Under a snapshot- or suspend-mode backup it comes back at once,
    as Proxmox's restart does; a stop-mode backup starts its guest itself, so the restart
    waits for its lock to go."""
    from shared import owner as owners
    from shared.ctconfig import store

    pct("start", ct)
    old_pid = lxcapi.init_pid(ct)
    holder = owners.claim(ct, "vzdump", lock="backup", mode=mode)
    conf = store.load(ct)
    conf.set("lock", "backup")
    store.save(conf)

    def restarted() -> bool:
        pid = lxcapi.init_pid(ct) if lxcapi.is_running(ct) else None
        return pid is not None and pid != old_pid

    try:
        pct("exec", ct, "--", "reboot", "-f", check=False)
        if mode == "stop":
            assert not wait_for(restarted, 5), "started under a stop-mode backup's lock"
    finally:
        conf = store.load(ct)
        conf.delete("lock")
        store.save(conf)
        owners.release(holder)
    assert wait_for(restarted), "CT did not come back after a guest reboot"
    log = (ctroot / f"run/ctkit/ct-{ct}.restart.log").read_text()
    assert "failed" not in log, log
    pct("stop", ct)


def test_a_command_holding_the_lock_as_the_guest_reboots_gets_its_answer(pct: Pct, ct: int) -> None:
    """pct set holds the config lock and asks LXC's monitor whether the CT runs; the monitor,
    running the post-stop hook of a guest reboot, waited 10 s for that lock: pct set failed
    with "LXC's monitor does not answer" (16 times in 16). The hook now waits a second."""
    for delay in (0.0, 0.2, 0.4):
        pct("start", ct)
        guest = subprocess.Popen([str(PCT), "exec", str(ct), "--", "reboot", "-f"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        res = pct("set", ct, "--description", f"after {delay}", check=False)
        guest.wait()
        assert res.rc == 0, res.text
        assert wait_for(lambda: pct("status", ct).out == "status: running\n")
        pct("stop", ct)


def test_status_verbose_live_figures(pct: Pct, ct: int, conf_text: Callable[[int], str]) -> None:
    stopped = dict(line.split(": ", 1) for line in pct("status", ct, "--verbose").out.splitlines())
    assert stopped["status"] == "stopped"
    assert stopped["maxmem"] == str(512 << 20) and stopped["mem"] == "0"
    assert stopped["maxdisk"] == str(4 << 30)  # a directory volume has no size of its own
    assert "pid" not in stopped
    pct("start", ct)
    pct("exec", ct, "--", "dd", "if=/dev/zero", "of=/root/blob", "bs=1M", "count=3")
    out = pct("status", ct, "--verbose").out
    lines = out.splitlines()
    assert lines == sorted(lines)
    live = dict(line.split(": ", 1) for line in lines)
    assert live["status"] == "running"
    assert int(live["pid"]) == lxcapi.init_pid(ct)
    assert int(live["mem"]) > 0
    assert int(live["disk"]) >= 3 << 20
    # running: both from the file system the container sees (a size-0 subvol's used bytes are
    # the host file system's, and were shown beside the stopped default of 4 GiB)
    assert int(live["disk"]) <= int(live["maxdisk"])
    assert 0 <= int(live["uptime"]) < 60
    assert live["name"] == f"CT{ct}" and live["vmid"] == str(ct) and live["type"] == "lxc"
    assert "cpu" not in live


def test_a_monitor_that_does_not_answer_holds_no_command(pct: Pct, ct: int) -> None:
    """liblxc waits for ever for the monitor's answer, holding the interpreter: pct status,
    list, stop and a nightly vzdump hung on a stopped or stuck monitor. The socket is asked
    directly, with a deadline: its answers are liblxc's, and silence is one line."""
    pct("start", ct)
    assert lxcapi.monitor_alive(ct)  # its socket found by the name liblxc gave it
    handle = lxcapi.container(ct)
    assert (lxcapi.state(ct), lxcapi.init_pid(ct)) == (handle.state, handle.init_pid)
    monitor = monitor_pid(paths.lxc_path(), ct)
    os.kill(monitor, signal.SIGSTOP)
    try:
        started = time.monotonic()
        res = pct("status", ct, timeout=30)
        # the socket is there, as Proxmox's check sees it: running, after the deadline
        assert res.out == "status: running\n" and time.monotonic() - started < 9
        res = pct("stop", ct, check=False, timeout=30)
        assert res.rc == 6
        assert res.err.splitlines()[0] == (
            f"CT {ct}: LXC's monitor does not answer (no reply in 5 s)"
        ), res.err
    finally:
        os.kill(monitor, signal.SIGCONT)
    pct("stop", ct)
    assert pct("status", ct).out == "status: stopped\n"
    assert lxcapi.state(ct) == "STOPPED" and lxcapi.init_pid(ct) is None


def test_case_46_list(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    assert pct("list").out == ""
    web, plain = sorted([new_vmid(), new_vmid()])
    pct("create", plain, busybox_template, "--rootfs", "local:0")
    pct("create", web, busybox_template, "--rootfs", "local:0", "--hostname", "web")
    pct("start", web)
    conf = ctroot / f"etc/pve/lxc/{plain}.conf"
    conf.write_text(conf.read_text().replace(f"hostname: CT{plain}\n", "") + "lock: backup\n")
    assert pct("list").out == (
        "VMID       Status     Lock         Name                \n"
        f"{web:<10} running                 web                 \n"
        f"{plain:<10} stopped    backup       CT{plain:<18}\n"
    )


def test_a_raw_volume_is_used_at_once_after_its_ct_stopped_by_itself(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """LXC reports STOPPED before the kernel lets go of the raw volume's loop device (the dying
    namespace goes last): a start, a pct mount or an fsck right then found its ext4 in use."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    stop_by_itself(pct, vmid)
    pct("start", vmid)
    assert pct("status", vmid).out == "status: running\n"
    pct("stop", vmid)
    stop_by_itself(pct, vmid)
    pct("mount", vmid)
    assert (ctroot / f"var/lib/lxc/{vmid}/rootfs/sbin/init").exists()
    pct("unmount", vmid)
    stop_by_itself(pct, vmid)
    pct("fsck", vmid)
    assert leftovers(ctroot) == []


@pytest.mark.parametrize("after", [False, True])
def test_a_pct_mount_killed_while_mounting_is_undone_by_the_next_command(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path, after: bool
) -> None:
    """``pct mount`` killed as it mounts the root file system (before the mount, or after it):
    its ``lock: mounted`` stayed for good, over nothing mounted or a part of the container. The
    next command unmounts what it had mounted and drops the lock, as its failure would have."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    env, marker = holding_tool(tmp_path, "mount", "*-t\\ ext4*", after=after)
    proc = subprocess.Popen([str(PCT), "mount", str(vmid)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the mount")
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    assert "lock: mounted\n" in conf.read_text()
    assert os.path.ismount(ctroot / f"var/lib/lxc/{vmid}/rootfs") == after
    res = pct("list")
    assert f"CT {vmid}: removed lock 'mounted'" in res.text, res.text
    unmounted = f"CT {vmid}: unmounted what the unfinished pct mount had mounted"
    assert (unmounted in res.text) == after, res.text
    assert "lock:" not in conf.read_text()
    assert leftovers(ctroot) == []
    pct("start", vmid)
    assert pct("status", vmid).out == "status: running\n"
    pct("stop", vmid)


def test_start_failure_names_the_real_reason(pct: Pct, ct: int, images: Images) -> None:
    init = images(ct) / f"subvol-{ct}-disk-0.subvol/sbin/init"
    os.unlink(init)
    res = pct("start", ct, check=False)
    assert res.rc != 0
    assert res.err.endswith(f"startup for container '{ct}' failed\n")
    assert 'Failed to exec "/sbin/init"' in res.out  # LXC's own words, not a status code


def test_a_failed_start_returns_once_the_container_has_let_go_of_its_volume(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """LXC reports a failed start while its monitor still runs the post-stop hooks and the
    container's mounts hold the raw volume: a destroy right after found it in use."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    append_conf(ctroot, vmid, "entrypoint: /no/such/init\n")
    res = pct("start", vmid, check=False)
    assert res.rc == 11 and res.err.endswith(f"startup for container '{vmid}' failed\n"), res.text
    assert not lxcapi.monitor_alive(vmid)
    assert leftovers(ctroot, wait=0) == []
    pct("destroy", vmid)  # at once
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()


def test_a_failed_start_returns_once_its_post_stop_hooks_have_run(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    """LXC's monitor closes its command socket before it runs the post-stop hooks: a failed
    ``pct start`` waited for the socket alone and returned while the hookscript's post-stop
    phase still ran, into whatever command came next. It now waits for the monitor process."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    done = tmp_path / "post-stop-done"
    snippets = ctroot / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    hook = snippets / "slow.sh"
    hook.write_text(f'#!/bin/sh\n[ "$2" = post-stop ] && sleep 1.5 && touch {done}\nexit 0\n')
    hook.chmod(0o755)
    pct("set", vmid, "--hookscript", "local:snippets/slow.sh")
    append_conf(ctroot, vmid, "entrypoint: /no/such/init\n")
    res = pct("start", vmid, check=False)
    assert res.rc == 11 and res.err.endswith(f"startup for container '{vmid}' failed\n"), res.text
    assert done.exists()  # the hook had ended when the start returned
    assert leftovers(ctroot, wait=0) == []
    assert not list((ctroot / "run").rglob(f"ct-{vmid}.monitor"))


def test_exec_hands_the_container_no_descriptor_of_the_caller(
    pct: Pct, vmid: int, busybox_template: Path, tmp_path: Path
) -> None:
    """lxc-attach passed every descriptor it inherited into the container: a caller's open
    host file (a script with /etc/shadow on fd 7, say) could be read inside."""
    secret = tmp_path / "secret"
    secret.write_text("HOST SECRET\n")
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    try:
        with open(secret, "rb") as fh:
            fd = fh.fileno()
            os.set_inheritable(fd, True)
            proc = subprocess.run(
                [str(PCT), "exec", str(vmid), "--", "sh", "-c", f"cat <&{fd} || true"],
                pass_fds=(fd,), capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "HOST SECRET" not in proc.stdout
    finally:
        pct("stop", vmid)


def test_container_text_reaches_the_host_terminal_escaped(
    pct: Pct, vmid: int, debian_template: Path, ctroot: Path
) -> None:
    """pct start printed the container's /etc/os-release ID in its warning as it was: escape
    sequences retitled and cleared the admin's terminal."""
    pct("create", vmid, debian_template, "--rootfs", "local:0")
    rootfs = ctroot / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    os_release = rootfs / "etc/os-release"
    if os_release.is_symlink():
        os_release.unlink()
    os_release.write_text('ID="x\x1b]0;PWNED\x07\x1b[2Jfake"\n')
    try:
        res = pct("start", vmid)
        assert "\x1b" not in res.text and "\x07" not in res.text
        assert "x\\x1b]0;PWNED\\x07\\x1b[2Jfake" in res.text, res.text
    finally:
        pct("stop", vmid, check=False)


@pytest.mark.parametrize("unprivileged", ["0", "1"])
def test_a_container_without_a_console_starts_with_its_ttys(
    pct: Pct, vmid: int, busybox_template: Path, unprivileged: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", unprivileged,
        "--console", "0")  # fmt: skip
    pct("start", vmid)
    try:
        out = pct("exec", vmid, "--", "ls", "/dev").out.split()
        assert "tty1" in out and "tty2" in out and "console" not in out, out
    finally:
        pct("stop", vmid)


def test_guest_setup_never_writes_where_the_containers_root_cannot(
    pct: Pct, vmid: int, debian_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    """The setup at start runs as the host's root with the mount points in place: a symlink
    the container's root planted (/etc/systemd/system-preset -> /mnt/share) had a host
    directory, bind-mounted into the unprivileged container, get ctkit's preset file (an
    existing one overwritten, a new one owned by the container)."""
    share = tmp_path / "share"  # the host's root's, which the container may only read
    share.mkdir()
    share.chmod(0o755)
    (share / "00-pve.preset").write_text("keep\n")
    pct("create", vmid, debian_template, "--rootfs", "local:0", "--unprivileged", "1",
        "--mp0", f"{share},mp=/mnt/share")  # fmt: skip
    root = ctroot / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    init = root / "sbin/init"  # the guest looks like systemd: presets are written
    real = Path(os.readlink(init)) if init.is_symlink() else None
    planted = []
    (root / "opt/sd").mkdir(parents=True)
    if real is None:
        init.rename(root / "sbin/init.real")
        real = Path("/sbin/init.real")
    else:
        init.unlink()
    (root / "opt/sd/systemd").symlink_to(real)
    init.symlink_to("/opt/sd/systemd")
    (root / "etc/systemd").mkdir(exist_ok=True)
    (root / "etc/systemd/system-preset").symlink_to("/mnt/share")
    planted += [root / "opt", root / "opt/sd", root / "opt/sd/systemd", init,
                root / "etc/systemd", root / "etc/systemd/system-preset"]  # fmt: skip
    for path in planted:
        os.lchown(path, 100000, 100000)
    try:
        res = pct("start", vmid, check=False)
        assert res.rc != 0 and "is not writable by the container's root" in res.text, res.text
    finally:
        pct("stop", vmid, check=False)
    assert sorted(p.name for p in share.iterdir()) == ["00-pve.preset"]
    assert (share / "00-pve.preset").read_text() == "keep\n"
