"""A vzdump killed with SIGKILL (no cleanup runs) at the point where the container is frozen,
stopped or snapshotted: the next vzdump, ``pct status/list/start/unlock`` and the scheduler tell
the dead owner from a live one and undo what it left (issue 19 item 11)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import (
    BIN,
    CT,
    HALT_ON_GO_INIT,
    Host,
    archives,
    pct,
    random_file,
    run,
    start_vzdump,
    tar_of,
    vzdump,
    wait_for_line,
)

pytestmark = pytest.mark.lxc

# a hook that blocks (as a long sleep whose pid it records) in the phases listed in <dir>/block
BLOCKING_HOOK = """#!/bin/bash
dir=$(dirname "$0")
if [ -f "$dir/block" ] && grep -qx -- "$1" "$dir/block"; then
    echo $$ > "$dir/blocked-$1.tmp" && mv "$dir/blocked-$1.tmp" "$dir/blocked-$1"
    exec sleep 600
fi
exit 0
"""


def blocking_hook(host: Host, phase: str) -> Path:
    hookdir = host.root / "blockhook"
    hookdir.mkdir(exist_ok=True)
    script = hookdir / "hook.sh"
    script.write_text(BLOCKING_HOOK)
    script.chmod(0o755)
    (hookdir / "block").write_text(f"{phase}\n")
    (hookdir / f"blocked-{phase}").unlink(missing_ok=True)
    return script


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"vzdump ended ({proc.returncode}) early: {err}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def thaw(vmid: int) -> None:
    for state in (
        Path(f"/sys/fs/cgroup/freezer/lxc/{vmid}/freezer.state"),
        Path(f"/sys/fs/cgroup/lxc/{vmid}/cgroup.freeze"),
    ):
        with contextlib.suppress(OSError):
            state.write_text("THAWED" if state.name == "freezer.state" else "0")


@contextlib.contextmanager
def killed_vzdump(host: Host, ct: CT, phase: str, *args: str) -> Iterator[int]:
    """Run vzdump until its hook blocks in ``phase``, SIGKILL it (and the hook); yields its pid.
    The CT is thawed afterwards whatever the test did, so the fixtures can stop it."""
    script = blocking_hook(host, phase)
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--script", str(script),
                        *args)  # fmt: skip
    marker = script.parent / f"blocked-{phase}"
    try:
        wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(marker.read_text()), signal.SIGKILL)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        thaw(ct.vmid)


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], object]) -> None:
    """SIGKILL vzdump (its own process) once ``ready()`` is true (within 60 s)."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def owner_record(ct: CT) -> dict[str, object] | None:
    path = ct.root / f"var/lib/ctkit/owners/owner-{ct.vmid}.json"
    return json.loads(path.read_text()) if path.exists() else None


def lxc_state(ct: CT) -> str:
    """LXC's own view (``pct status`` would recover the CT before answering)."""
    lxcpath = str(ct.root / "var/lib/lxc")
    return run(["lxc-info", "-P", lxcpath, "-n", str(ct.vmid), "-sH"]).out.decode().strip()


def pct_run(*args: str) -> tuple[int, str, str]:
    res = run([str(BIN / "pct"), *args])
    return res.rc, res.out.decode(), res.err


def assert_recovered(ct: CT, host: Host, *, running: bool = True) -> None:
    conf = ct.conf()
    assert "lock:" not in conf and "[vzdump]" not in conf, conf
    assert ct.freezer_state() == "THAWED" if running else True
    assert ct.running() is running
    left = [p.name for p in host.dumpdir.iterdir() if p.suffix in (".dat", ".tmp")]
    assert not left, left
    assert not list((ct.root / "var/tmp").glob("vzdumptmp*"))
    assert owner_record(ct) is None


def test_suspend_killed_while_frozen_then_pct_status(host: Host) -> None:
    """Frozen by a live vzdump: ``pct status``/``list`` say frozen and leave it alone. Killed:
    ``pct status`` thaws it, removes the full copy and the lock, and says so."""
    ct = host.create(start=True)
    ct.write("data", b"x" * 4096)
    script = blocking_hook(host, "pre-restart")
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--script", str(script),
                        "--mode", "suspend")  # fmt: skip
    try:
        wait_for(script.parent / "blocked-pre-restart", proc)
        # the owner lives: nothing is recovered, the state is shown as it is
        rc, out, err = pct_run("status", str(ct.vmid))
        assert (rc, out) == (0, "status: frozen\n"), err
        assert "recovering" not in err
        rc, out, _err = pct_run("list")
        assert f"{ct.vmid:<10} frozen     backup" in out
        record = owner_record(ct)
        assert record is not None and record["frozen"] is True and record["lock"] == "backup"
        tmpdir = Path(str(record["tmpdir"]))
        assert (tmpdir / "tar/rootfs/data").is_file()  # the full copy of the first sync
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        os.kill(int((script.parent / "blocked-pre-restart").read_text()), signal.SIGKILL)
        assert ct.freezer_state() == "FROZEN" and "lock: backup" in ct.conf()

        rc, out, err = pct_run("status", str(ct.vmid))
        assert (rc, out) == (0, "status: running\n"), err
        lines = err.splitlines()
        assert f"CT {ct.vmid}: vzdump (pid {proc.pid}) ended without cleaning up - recovering" in (
            lines
        )
        assert f"CT {ct.vmid}: thawed the container vzdump had frozen" in lines
        assert f"CT {ct.vmid}: removed temporary directory '{tmpdir}'" in lines
        assert f"CT {ct.vmid}: removed lock 'backup'" in lines
        assert not tmpdir.exists()
        assert_recovered(ct, host)
        # recovered once: the next command has nothing to say
        rc, out, err = pct_run("status", str(ct.vmid))
        assert (rc, out, err) == (0, "status: running\n", "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        thaw(ct.vmid)


def _rsyncs_writing(name: str) -> list[int]:
    """The live (not zombie) rsync processes whose command line names ``name``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if b"rsync" in argv[0] and name.encode() in b" ".join(argv) and state != "Z":
                found.append(int(proc.name))
    return found


def test_suspend_killed_during_its_first_sync_takes_rsync_along(host: Host) -> None:
    """SIGKILL to vzdump alone while its first rsync copies the running CT: rsync ends with it
    (it would go on writing into the temporary directory that the next command removes, for as
    long as the bandwidth limit makes it last), and ``pct list`` recovers the rest."""
    ct = host.create(start=True)
    ct.write("srv/big.bin", os.urandom(24 << 20))
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                        "--bwlimit", "4096")  # fmt: skip
    tmpdir_name = f"/vzdump-lxc-{ct.vmid}-"  # the copy's directory: beside the archive
    try:
        deadline = time.monotonic() + 60
        while not _rsyncs_writing(tmpdir_name):
            assert proc.poll() is None and time.monotonic() < deadline, "no rsync started"
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 2
        while left := _rsyncs_writing(tmpdir_name):
            assert time.monotonic() < deadline, f"rsync {left} outlived its vzdump"
            time.sleep(0.05)
        rc, out, err = pct_run("list")
        assert rc == 0 and f"{ct.vmid:<10} running" in out, err
        assert f"CT {ct.vmid}: vzdump (pid {proc.pid}) ended without cleaning up" in err
        assert_recovered(ct, host)
    finally:
        for pid in _rsyncs_writing(tmpdir_name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        thaw(ct.vmid)


def test_stop_mode_killed_while_writing_then_vzdump(host: Host) -> None:
    """Killed in stop mode while tar writes the ``.dat``: the next vzdump restarts the CT,
    removes the ``.dat`` and the lock, and makes its backup."""
    ct = host.create(start=True)
    ct.write("big", os.urandom(8 << 20))
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                        "--bwlimit", "1024")  # fmt: skip
    kill_when(
        proc, lambda: any(p.suffix == ".dat" and p.stat().st_size for p in host.dumpdir.iterdir())
    )
    dat = next(p for p in host.dumpdir.iterdir() if p.suffix == ".dat")
    assert lxc_state(ct) == "STOPPED" and "lock: backup" in ct.conf()
    time.sleep(1)  # the orphaned tar notices its reader is gone
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "snapshot")
    assert res.rc == 0, res.err
    assert f"INFO: CT {ct.vmid}: removed partial archive '{dat}'" in res.lines
    assert f"INFO: CT {ct.vmid}: removed lock 'backup'" in res.lines
    assert f"INFO: CT {ct.vmid}: restarted the container vzdump had stopped" in res.lines
    assert "INFO: status = running" in res.lines  # recovered before the new backup looked
    assert len(archives(host.dumpdir, ct.vmid)) == 1
    assert_recovered(ct, host)


def test_stop_mode_killed_while_stopped_then_pct_start(host: Host) -> None:
    ct = host.create(start=True)
    with killed_vzdump(host, ct, "pre-restart", "--mode", "stop") as pid:
        assert lxc_state(ct) == "STOPPED" and "lock: backup" in ct.conf()
        rc, out, err = pct_run("start", str(ct.vmid))
        assert rc == 0, err
        assert f"CT {ct.vmid}: vzdump (pid {pid}) ended without cleaning up - recovering" in out
        assert f"CT {ct.vmid}: restarted the container vzdump had stopped" in out
        assert_recovered(ct, host)


def test_stop_mode_killed_while_the_guest_goes_down_then_pct_list(host: Host) -> None:
    """Killed after the halt signal, while the guest still went down (LXC reports it running
    until its init is done): the recovery took it as running, dropped the record, and the
    container stayed down for good. It waits for the shutdown, then starts it again."""
    ct = host.create()
    ct.write("sbin/init", HALT_ON_GO_INIT.encode()).chmod(0o755)
    pct("start", str(ct.vmid))
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop")
    go = ct.volume() / "go"
    try:
        kill_when(proc, lambda: (ct.volume() / "halting").exists())  # the guest goes down
        assert lxc_state(ct) == "RUNNING" and "lock: backup" in ct.conf()
        listing = subprocess.Popen([str(BIN / "pct"), "list"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)  # fmt: skip
        seen = wait_for_line(listing, f"CT {ct.vmid}: waiting for the shutdown vzdump began to end")
        go.touch()  # now the guest is down
        _out, rest = listing.communicate(timeout=60)
    finally:
        go.touch()
    assert listing.returncode == 0, [*seen, rest.decode()]
    assert f"CT {ct.vmid}: restarted the container vzdump had stopped" in rest.decode()
    assert_recovered(ct, host)


BUSY_TMPDIR_HOOK = """#!/bin/sh
# at backup-end, something in the temp dir that its removal cannot take (a mount point, as
# an rsync still writing there can be): it goes with vzdump's own mount namespace
if [ "$1" = backup-end ]; then
    busy="${TARGET%.tar*}.tmp/busy"
    mkdir -p "$busy" && mount -t tmpfs none "$busy"
fi
"""


def test_a_temp_dir_the_backup_could_not_remove_is_left_to_the_next_command(host: Host) -> None:
    """The cleanup removed the temp dir as far as it could and dropped the record anyway: an
    rsync started just as a signal came went on writing there, and what it wrote stayed for
    good. The record now stays while the temp dir does; the next command removes it."""
    ct = host.create(start=True)
    ct.write("data", b"x" * 4096)
    script = host.root / "busy-hook.sh"
    script.write_text(BUSY_TMPDIR_HOOK)
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(script))  # fmt: skip
    assert res.rc == 0, res.err
    (tmpdir,) = [p for p in host.dumpdir.iterdir() if p.suffix == ".tmp"]
    assert owner_record(ct) is not None  # its pid is gone with vzdump
    rc, out, err = pct_run("list")
    assert rc == 0, err
    assert f"CT {ct.vmid}: removed temporary directory '{tmpdir}'" in out + err
    assert_recovered(ct, host)


def test_snapshot_killed_then_pct_unlock(host: Host, btrfs: Path) -> None:
    """Snapshot mode on btrfs, killed while its snapshot is taken and mounted: ``pct unlock``
    removes the snapshot (config section and btrfs subvolume) and the lock."""
    ct = host.create(rootfs="bt:0", start=True)
    with killed_vzdump(host, ct, "pre-restart", "--mode", "snapshot"):
        assert "[vzdump]" in ct.conf() and "lock: backup" in ct.conf()
        rc, out, err = pct_run("unlock", str(ct.vmid))
        assert rc == 0, err
        assert f"CT {ct.vmid}: removed snapshot 'vzdump'" in out
        assert f"CT {ct.vmid}: removed lock 'backup'" in out
        assert_recovered(ct, host)
        snaps = subprocess.run(["btrfs", "subvolume", "list", str(btrfs)], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert "vzdump" not in snaps


def test_suspend_killed_then_pct_list_and_scheduler(host: Host) -> None:
    """``pct list`` recovers (lines on stderr, the table on stdout stays clean); a dead owner
    found first by the scheduler pass is recovered there."""
    first, second = host.create(start=True), host.create(start=True)
    with killed_vzdump(host, first, "pre-restart", "--mode", "suspend"):
        rc, out, err = pct_run("list")
        assert rc == 0
        assert f"{first.vmid:<10} running" in out and "recovering" not in out
        assert f"CT {first.vmid}: thawed the container vzdump had frozen" in err
        assert_recovered(first, host)
    with killed_vzdump(host, second, "pre-restart", "--mode", "suspend"):
        res = run([str(BIN / "vzdump"), "scheduler", "run-due"])
        assert res.rc == 0, res.err
        assert f"CT {second.vmid}: thawed the container vzdump had frozen" in res.lines
        assert_recovered(second, host)


def test_a_reused_pid_is_a_dead_owner(host: Host) -> None:
    """A record whose pid now belongs to another process (other start time) is dead."""
    ct = host.create()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    record = {"vmid": ct.vmid, "op": "vzdump", "pid": os.getpid(), "start": 1, "boot": boot,
              "lock": "backup"}  # fmt: skip
    text = ct.conf_path.read_text()
    ct.conf_path.write_text(text + "lock: backup\n")
    path = ct.root / f"var/lib/ctkit/owners/owner-{ct.vmid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    rc, out, err = pct_run("status", str(ct.vmid))
    assert (rc, out) == (0, "status: stopped\n")
    assert f"CT {ct.vmid}: removed lock 'backup'" in err
    assert "lock:" not in ct.conf() and not path.exists()


def test_a_file_system_left_frozen_by_a_killed_snapshot_is_thawed(host: Host, btrfs: Path) -> None:
    """Snapshot mode freezes an ext4 image on btrfs (FIFREEZE) for a clean snapshot; killed
    inside that window, the file system stayed frozen for good, every write of the container
    hanging. The next command thaws it with the cgroup."""
    import fcntl

    from shared.runtime import lxcapi
    from shared.runtime.snapshot import FIFREEZE, FITHAW
    from shared.storage import volumes

    ct = host.create(rootfs="bt:0")
    volid = volumes.alloc_volume("bt", ct.vmid, 32 << 20, root_uid=100000, root_gid=100000,
                                 fmt="raw")  # fmt: skip
    run([str(BIN / "pct"), "set", str(ct.vmid), "--mp0", f"{volid},mp=/data"])
    ct.start()
    pid = lxcapi.init_pid(ct.vmid)
    assert pid is not None
    fd = os.open(f"/proc/{pid}/root/data", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE)
        _recovered_from_a_frozen_file_system(ct)
    finally:
        with contextlib.suppress(OSError):  # a failed check must not leave it frozen
            fcntl.ioctl(fd, FITHAW)
        os.close(fd)


def _recovered_from_a_frozen_file_system(ct: CT) -> None:
    """The record of a snapshot-mode vzdump that died inside the freeze; then pct status."""
    from shared import owner as owners

    # the record a snapshot-mode vzdump leaves when it dies inside the freeze (pid 0: dead)
    record = owners.Owner(ct.vmid, "vzdump", 0, 1, owners.boot_id(), mode="snapshot", frozen=True)
    path = owners.record_path(ct.vmid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(record)))
    rc, out, err = pct_run("status", str(ct.vmid))
    assert out == "status: running\n"
    assert rc == 0, err
    assert f"CT {ct.vmid}: thawed the file system at '/data' vzdump had frozen" in err, err
    write = run([str(BIN / "pct"), "exec", str(ct.vmid), "--", "sh", "-c", "echo x > /data/f"],
                timeout=20)  # fmt: skip
    assert write.rc == 0, write.err


def test_a_backup_cut_by_a_host_crash_is_recovered_after_the_reboot(
    host: Host, btrfs: Path
) -> None:
    """A crash is a kill too, and its lock and snapshot are on disk: the owner record is kept
    beside them, not in /run (a tmpfs the reboot empties), so the first command of the next
    boot removes them."""
    ct = host.create(rootfs="bt:0", start=True)
    with killed_vzdump(host, ct, "pre-restart", "--mode", "snapshot"):
        pass
    # the reboot: every container stopped, /run emptied, another boot id
    lxcpath = str(ct.root / "var/lib/lxc")
    run(["lxc-stop", "-P", lxcpath, "-n", str(ct.vmid), "--kill"])
    assert lxc_state(ct) == "STOPPED"
    subprocess.run(["rm", "-rf", "--one-file-system", str(ct.root / "run")], check=True)
    path = ct.root / f"var/lib/ctkit/owners/owner-{ct.vmid}.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, boot="0" * 8 + "-0000-4000-8000-" + "0" * 12)))
    assert "[vzdump]" in ct.conf() and "lock: backup" in ct.conf()
    rc, out, err = pct_run("start", str(ct.vmid))
    assert rc == 0, err
    assert f"CT {ct.vmid}: removed snapshot 'vzdump'" in out
    assert f"CT {ct.vmid}: removed lock 'backup'" in out
    assert_recovered(ct, host)


def mounts_at(path: Path) -> list[str]:
    """The processes (pid and command) in whose mount namespace something is mounted at
    ``path``: this one's, a container monitor's, any other."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            table = (proc / "mountinfo").read_text()
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if any(line.split(" ")[4] == str(path) for line in table.splitlines()):
            found.append(f"{proc.name} {comm}")
    return found


def test_a_guest_restarted_by_a_killed_vzdump_holds_no_mount_of_the_next(host: Host) -> None:
    """Stop mode, two guests: vzdump restarts the first, then is killed while the second's
    volume is mounted at /mnt/vzsnap0. The first's LXC monitor had been started from vzdump's
    private mount namespace and kept it alive with that mount in it: the second's volume stayed
    mounted until the first stopped (a raw one kept its loop device: pct destroy failed)."""
    first, second = host.create(start=True), host.create(start=True)
    random_file(second, "big", 192 << 20)  # a second or more of tar: time for the kill
    proc = start_vzdump(str(first.vmid), str(second.vmid), "--mode", "stop",
                        "--dumpdir", str(host.dumpdir))  # fmt: skip
    kill_when(proc, lambda: tar_of(second.vmid, timeout=60))
    assert first.running()
    vzsnap = host.root / "mnt/vzsnap0"
    deadline = time.monotonic() + 10  # the killed vzdump's children go with it
    while mounts_at(vzsnap) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mounts_at(vzsnap) == []
    rc, _out, err = pct_run("status", str(second.vmid))
    assert rc == 0 and "restarted the container vzdump had stopped" in err, err
    assert_recovered(second, host)


def test_a_restart_by_the_recovery_waits_for_the_volume_to_be_let_go(host: Host) -> None:
    """Killed while the container went down: the recovery's restart came while the kernel
    still held the raw volume of the stopped container (its namespace goes last). LXC's mount
    of it then failed after ext4's MMP wait, and the container stayed down until a later
    command. Here another mount of the volume plays the one still going away."""
    ct = host.create(rootfs="local:1", start=True)
    with killed_vzdump(host, ct, "pre-restart", "--mode", "stop"):
        assert lxc_state(ct) == "STOPPED"
        image = ct.volume()
        held = host.root / "held"
        held.mkdir()
        subprocess.run(["mount", "-o", "loop", str(image), str(held)], check=True)
        releasing = threading.Timer(1.0, subprocess.run, [["umount", str(held)]])
        releasing.start()
        try:
            started = time.monotonic()
            rc, out, err = pct_run("status", str(ct.vmid))
            assert rc == 0 and f"CT {ct.vmid}: restarted the container" in out + err, err
            assert time.monotonic() - started < 20  # no MMP wait of a failed mount
        finally:
            releasing.join()
        assert_recovered(ct, host)


def test_a_snapshot_whose_removal_stopped_half_way_is_finished_by_the_next_command(
    host: Host, btrfs: Path, tmp_path: Path
) -> None:
    """The backup's snapshot could not be removed (busy: here a mount of it elsewhere; in the
    wild a Ctrl-C that killed the unmount before it). vzdump warned and let go of its record,
    so ``lock: snapshot-delete`` stayed and every later backup of the CT failed on it. The
    record now stays: once vzdump is gone, the next command removes the snapshot and lock."""
    ct = host.create(rootfs="bt:0", start=True)
    random_file(ct, "big", 4 << 20)
    snap = btrfs / f"images/{ct.vmid}/subvol-{ct.vmid}-disk-0.subvol@vzdump"
    holder = tmp_path / "holder"
    holder.mkdir()
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "snapshot",
                        "--bwlimit", "1024")  # fmt: skip
    try:
        wait_for_line(proc, "creating vzdump archive")
        subprocess.run(["mount", "--bind", str(snap), str(holder)], check=True)
        try:
            _out, err = proc.communicate(timeout=120)
        finally:
            subprocess.run(["umount", str(holder)], check=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "snapshot 'vzdump' was not (fully) removed" in err.decode(), err
    assert "lock: snapshot-delete" in ct.conf()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "snapshot")
    assert res.rc == 0, res.err
    assert f"CT {ct.vmid}: removed snapshot 'vzdump'" in res.err
    assert "lock:" not in ct.conf() and "[vzdump]" not in ct.conf()
    assert not snap.exists()
