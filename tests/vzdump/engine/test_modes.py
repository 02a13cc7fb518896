"""The three modes on running and stopped containers: stop (clean shutdown, backup-end before
the restart), suspend (two syncs around the freeze), snapshot (btrfs, under 200 ms frozen; the
fallback on dir storage), and the hook phases (vzdump §4, §10 cases 10-13, 15, 16, 33)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from shared.runtime import snapshot

from .conftest import (
    BIN,
    CT,
    HALT_ON_GO_INIT,
    Host,
    archives,
    log_messages,
    logfile,
    member_text,
    names,
    only_archive,
    pct,
    run,
    start_vzdump,
    tar_list,
    vzdump,
)

pytestmark = pytest.mark.lxc

# an init that records a clean shutdown (SIGPWR) in the root file system
RECORDING_INIT = """#!/bin/sh
trap 'echo clean-halt >> /halt.log; exit 0' PWR TERM INT
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""
# an init that ignores the halt signal: a clean shutdown never completes
STUBBORN_INIT = """#!/bin/sh
trap '' PWR
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""


def set_init(ct: CT, script: str) -> None:
    ct.write("sbin/init", script.encode()).chmod(0o755)


def frozen_window(msgs: list[str]) -> float:
    found = [m for m in msgs if m.startswith("INFO: frozen window: ")]
    assert len(found) == 1, msgs
    m = re.fullmatch(r"INFO: frozen window: (\d+\.\d{3}) s", found[0])
    assert m, found
    return float(m.group(1))


def test_stop_mode_running_ct(host: Host) -> None:
    """Case 15: clean shutdown, archive, backup-end while still down, then the restart."""
    ct = host.create()
    set_init(ct, RECORDING_INIT)
    ct.start()
    hook = host.hook()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                 "--script", str(hook))  # fmt: skip
    assert res.rc == 0, res.err
    assert ct.running()
    assert ct.volume().joinpath("halt.log").read_text() == "clean-halt\n"
    msgs = log_messages(logfile(only_archive(host.dumpdir, ct.vmid)))
    core = [m for m in msgs if not m.startswith("INFO: hook says")]
    assert core[1:8] == [
        "INFO: status = running",
        "INFO: backup mode: stop",
        "INFO: ionice priority: 7",
        f"INFO: CT Name: ct{ct.vmid % 1000}",
        "INFO: including mount point rootfs ('/') in backup",
        "INFO: stopping virtual guest",
        f"INFO: creating vzdump archive '{only_archive(host.dumpdir, ct.vmid)}'",
    ]
    assert msgs.index("INFO: restarting vm") > msgs.index("INFO: hook says backup-end")
    assert re.fullmatch(r"INFO: guest is online again after (<1|\d+) seconds", core[-2])
    calls = {c["args"].split()[0]: c for c in host.hook_calls()}
    assert calls["pre-stop"]["STATE"] == "RUNNING"
    assert calls["backup-end"]["STATE"] == "STOPPED"  # backup-end ran before the restart
    assert calls["post-restart"]["STATE"] == "RUNNING"
    assert "lock:" not in ct.conf()


SLOW_HALT_INIT = """#!/bin/sh
trap 'touch /halting; sleep 4; exit 0' PWR
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""


def test_a_command_during_the_backups_shutdown_is_refused_at_once(host: Host) -> None:
    """The backup's ``lock: backup`` keeps other commands off while it shuts the container
    down: they say so at once, instead of waiting for the config lock until the guest is
    down (a ``pct stop`` or ``reboot`` holds that lock; a backup needs not). The guest goes
    down only after the command has answered: one that waited would time out."""
    ct = host.create()
    set_init(ct, HALT_ON_GO_INIT)
    ct.start()
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop")
    try:
        deadline = time.monotonic() + 30
        while not (ct.volume() / "halting").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        res = run([str(BIN / "pct"), "set", str(ct.vmid), "--description", "x"], timeout=30)
    finally:
        (ct.volume() / "go").touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert res.rc != 0 and res.err == "CT is locked (backup)\n", res.err
    assert ct.running() and "lock:" not in ct.conf()


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_stop_mode_interrupted_while_the_guest_goes_down_starts_it_again(
    host: Host, parallel: str
) -> None:
    """SIGTERM (or Ctrl-C) after the halt signal, while the guest still went down: the
    cleanup took it as running, dropped its record, and it stayed down for good once its
    init was done. It waits for the guest to be down, then starts it again."""
    ct = host.create()
    set_init(ct, SLOW_HALT_INIT)
    ct.start()
    proc = start_vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                        "--parallel", parallel)  # fmt: skip
    deadline = time.monotonic() + 30
    while not (ct.volume() / "halting").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.terminate()  # a parallel job passes it on to its workers
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    text = (out + err).decode()
    assert "waiting for the guest to finish going down, to start it again" in text, text
    assert "restarting vm" in text, text
    assert ct.running() and "lock:" not in ct.conf()
    owners = host.root / "var/lib/ctkit/owners"
    assert not owners.exists() or not list(owners.iterdir())


def test_stop_mode_ct_that_does_not_stop(host: Host) -> None:
    """Case 16: `container did not stop`; no restart is attempted; the lock is removed."""
    ct = host.create()
    set_init(ct, STUBBORN_INIT)
    ct.start()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "stop",
                 "--stopwait", "0")  # fmt: skip
    assert res.rc == 13
    assert f"ERROR: Backup of VM {ct.vmid} failed - container did not stop" in res.lines
    assert not any("restarting" in ln or "online again" in ln for ln in res.lines)
    assert ct.running()
    assert "lock:" not in ct.conf()
    assert [p.suffix for p in host.dumpdir.iterdir()] == [".log"]


def test_suspend_mode(host: Host) -> None:
    """Case 13: first sync, suspend, final sync, resume, online again, archive; the CT is
    frozen only between the syncs; the frozen window is reported."""
    ct = host.create(start=True)
    ct.write("data/file", b"payload")
    hook = host.hook()
    tmpdir = host.root / "scratch"
    tmpdir.mkdir()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(hook), "--tmpdir", str(tmpdir))  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    msgs = [m for m in log_messages(logfile(archive)) if "hook says" not in m]
    steps = [
        "INFO: starting first sync ",
        "INFO: first sync finished - transferred ",
        "INFO: suspending guest",
        "INFO: starting final sync ",
        "INFO: final sync finished - transferred ",
        "INFO: resuming guest",
        "INFO: guest is online again after ",
        "INFO: creating vzdump archive ",
    ]
    where = [next(i for i, m in enumerate(msgs) if m.startswith(s)) for s in steps]
    assert where == sorted(where), msgs
    assert re.match(r"INFO: starting first sync /proc/\d+/root//\./ to ", msgs[where[0]])
    assert frozen_window(msgs) < 5
    calls = {c["args"].split()[0]: c for c in host.hook_calls()}
    assert calls["pre-stop"]["FREEZER"] == "THAWED"
    assert calls["pre-restart"]["FREEZER"] == "FROZEN"
    assert calls["post-restart"]["FREEZER"] == "THAWED"
    assert ct.freezer_state() == "THAWED" and ct.running()
    assert f" to {tmpdir}/vzdumptmp" in msgs[where[0]]  # --tmpdir T: T/vzdumptmp<pid>_<vmid>
    assert msgs[where[0]].endswith("/rootfs")  # the copy: apart from the config members
    assert list(tmpdir.iterdir()) == []
    all_names = names(archive)
    assert all_names[:2] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw"]
    assert "./data/file" in all_names and all_names.count("./etc/vzdump/pct.conf") == 1
    owners = {m.name: m.uid for m in tar_list(archive)}
    assert owners["./data/file"] == 0 and max(owners.values()) < 65536


def test_relative_dump_and_temp_directories_work_in_suspend_mode(host: Host) -> None:
    """Relative to where vzdump runs: tar's second --directory (the copy) resolved a relative
    one against the first, and suspend mode failed."""
    ct = host.create(start=True)
    ct.write("data/file", b"payload")
    (host.root / "t").mkdir()
    argv = [str(BIN / "vzdump"), str(ct.vmid), "--mode", "suspend", "--dumpdir", "dump"]
    res = run([*argv, "--tmpdir", "t"], cwd=host.root)
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    assert "./data/file" in names(archive)
    new = host.new_vmid()
    pct("restore", str(new), str(archive), "--storage", "local")
    pct("start", str(new))
    assert pct("exec", str(new), "--", "cat", "/data/file") == "payload"


def test_suspend_mode_never_follows_a_symlink_out_of_the_ct(host: Host) -> None:
    """rsync reaches a mount point through /proc/<pid>/root, where an absolute symlink the
    container made resolves on the host: host files went into the container's backup."""
    secret = host.root / "hostsecret"
    (secret / "data").mkdir(parents=True)
    (secret / "data/secret.txt").write_text("HOST-ONLY SECRET\n")
    os.chmod(secret, 0o755)
    ct = host.create(start=True, extra=["--mp0", "local:0,mp=/srv/data,backup=1"])
    pct("exec", str(ct.vmid), "--", "sh", "-c", f"mv /srv /srv.old && ln -s {secret} /srv")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
    assert res.rc != 0
    assert "path '/srv/data' crosses a symlink or a file in the container" in res.err, res.err
    assert not list(host.dumpdir.glob(f"vzdump-lxc-{ct.vmid}-*.tar*"))
    assert ct.freezer_state() == "THAWED" and ct.running()


def test_suspend_mode_final_sync_sees_a_rewrite_in_the_same_second(host: Host) -> None:
    """A file rewritten at the same size within the second the first sync copied it: the
    final sync took it as unchanged by size and whole-second mtime, and the archive held the
    stale content."""
    ct = host.create(start=True)
    state = ct.write("root/state.txt", b"AAAA")
    second = 1_800_000_000
    os.utime(state, ns=(second * 10**9, second * 10**9 + 100))
    script = host.root / "rewrite.sh"
    script.write_text(
        '#!/bin/sh\n[ "$1" = pre-stop ] || exit 0\n'
        f"printf BBBB > {state} && touch -d @{second}.5 {state}\n"
    )
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(script))  # fmt: skip
    assert res.rc == 0, res.err
    assert os.stat(state).st_mtime_ns // 10**9 == second
    assert member_text(only_archive(host.dumpdir, ct.vmid), "./root/state.txt") == "BBBB"


def test_suspend_mode_leaves_a_frozen_ct_frozen(host: Host) -> None:
    """A CT frozen by its admin (pct suspend) is backed up as it is and stays frozen, as the
    snapshot path and the recovery treat it: it is not ours to thaw."""
    ct = host.create(start=True)
    ct.write("data/file", b"payload")
    pct("suspend", str(ct.vmid))
    try:
        assert ct.freezer_state() == "FROZEN"
        res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
        assert res.rc == 0, res.err
        assert "INFO: guest was already frozen - it stays frozen" in res.lines
        assert ct.freezer_state() == "FROZEN"
        assert not any(m.startswith("INFO: frozen window") for m in res.lines)
        assert "./data/file" in names(only_archive(host.dumpdir, ct.vmid))
    finally:
        pct("resume", str(ct.vmid))
    assert ct.freezer_state() == "THAWED"


def test_snapshot_mode_falls_back_on_dir_storage(host: Host) -> None:
    """Case 10: the exact fallback lines (INFO, not WARN), prepare logged twice, suspend mode."""
    ct = host.create(start=True, hostname="web")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    msgs = log_messages(logfile(only_archive(host.dumpdir, ct.vmid)))
    assert msgs[1:9] == [
        "INFO: status = running",
        "INFO: CT Name: web",
        "INFO: including mount point rootfs ('/') in backup",
        "INFO: mode failure - some volumes do not support snapshots",
        "INFO: trying 'suspend' mode instead",
        "INFO: backup mode: suspend",
        "INFO: ionice priority: 7",
        "INFO: CT Name: web",
    ]
    assert not any(m.startswith("WARN") for m in msgs)
    assert "INFO: suspending guest" in msgs
    assert "Backup job finished successfully" in res.lines[-1]


def test_snapshot_mode_on_btrfs(host: Host, btrfs: Path) -> None:
    """Case 11 and 12 and the frozen window: a stale vzdump snapshot is force-removed; during
    the archive the config has [vzdump] and lock: backup; afterwards neither remains, the CT
    was frozen well under 200 ms, and /mnt/vzsnap0 is empty."""
    ct = host.create(rootfs="bt:0", start=True)
    ct.write("etc/before", b"in the snapshot")
    snapshot.create(ct.vmid, "vzdump", allow_reserved=True)  # a crashed run's leftover
    ct.write("etc/after", b"not in the snapshot")
    _write_fresh(ct, "srv/fresh")
    hook = host.hook()
    res = vzdump(str(ct.vmid), "--storage", "bt", "--compress", "zstd", "--script", str(hook))
    assert res.rc == 0, res.err
    archive = only_archive(btrfs / "dump", ct.vmid)
    msgs = [m for m in log_messages(logfile(archive)) if "hook says" not in m]
    assert msgs[1:6] == [
        "INFO: status = running",
        f"INFO: CT Name: ct{ct.vmid % 1000}",
        "INFO: including mount point rootfs ('/') in backup",
        "INFO: backup mode: snapshot",
        "INFO: ionice priority: 7",
    ]
    assert msgs.index("INFO: found old vzdump snapshot (force removal)") < msgs.index(
        "INFO: create storage snapshot 'vzdump'"
    )
    assert "INFO: cleanup temporary 'vzdump' snapshot" in msgs
    window = frozen_window(msgs)
    during = (host.root / "hook/conf-backup-end").read_text().splitlines()
    assert "lock: backup" in during and "[vzdump]" in during and "parent: vzdump" in during
    after = ct.conf()
    assert "vzdump" not in after and "lock:" not in after and "parent:" not in after
    assert not [p for p in (btrfs / f"images/{ct.vmid}").iterdir() if "vzdump" in p.name]
    assert not any((host.root / "mnt/vzsnap0").iterdir())
    assert ct.running() and ct.freezer_state() == "THAWED"
    members = {m.name: m for m in tar_list(archive)}
    assert "./etc/before" in members and "./etc/after" in members
    assert members["./etc/after"].uid == 0 and max(m.uid for m in members.values()) < 65536
    conf = member_text(archive, "./etc/vzdump/pct.conf")
    assert "vzdump" not in conf and "lock" not in conf
    # a dump directory on btrfs: the temp dir goes below the root's var/tmp (task log only)
    tmp = host.root / "var/tmp/vzdumptmp"
    note = next(ln for ln in res.lines if "filesystem type on dumpdir" in ln)
    assert note.startswith(f"INFO: filesystem type on dumpdir is 'btrfs' -using {tmp}")
    assert not any("filesystem type" in m for m in msgs)
    for attempt in range(2):  # measured again while the other workers' writes delay it
        if window < 0.2:
            break
        window = _second_window(ct, btrfs, attempt)
    assert window < 0.2


def _write_fresh(ct: CT, name: str) -> None:
    """480 MiB freshly written (zeros: cheap to write and, sparse, to archive), not yet on
    disk: flushing it must not happen while the CT is frozen (that flush alone takes about
    0.5 s here, every time). A new file, never truncated: btrfs starts writing back a file
    truncated to zero when it is closed."""
    with open(ct.write(name, b""), "r+b") as fh:
        for _ in range(120):
            fh.write(bytes(4 << 20))


def _second_window(ct: CT, btrfs: Path, attempt: int) -> float:
    """The frozen window of one more backup after new fresh data. One measurement can wait on
    the other test workers' disk writes (the snapshot's commit flushes the loop file); a flush
    of the fresh data inside the window would exceed the limit in all of them."""
    (btrfs / "dump").joinpath(f"again{attempt}").mkdir()
    (ct.volume() / ("srv/fresh" if attempt == 0 else f"srv/fresh-again{attempt - 1}")).unlink()
    subprocess.run(["btrfs", "-q", "subvolume", "sync", str(btrfs)], check=True)
    # the space comes free with a commit; btrfs short of space writes back as it is written
    subprocess.run(["btrfs", "-q", "filesystem", "sync", str(btrfs)], check=True)
    _write_fresh(ct, f"srv/fresh-again{attempt}")
    dump = btrfs / f"dump/again{attempt}"
    res = vzdump(str(ct.vmid), "--dumpdir", str(dump), "--compress", "zstd")
    assert res.rc == 0, res.err
    msgs = log_messages(logfile(only_archive(dump, ct.vmid)))
    return frozen_window(msgs)


def test_snapshot_mode_with_mount_points(host: Host, btrfs: Path) -> None:
    """§4.4: every backed-up volume on btrfs (a dir volume with backup=0 does not count):
    snapshot mode with the several-volume lines; mp0 comes from its snapshot."""
    ct = host.create(rootfs="bt:0", extra=["--mp0", "bt:0,mp=/data,backup=1",
                                           "--mp1", "local:0,mp=/scratch"])  # fmt: skip
    ct.start()
    ct.write("data/in-snapshot", b"x", key="mp0")
    ct.write("scratch-file", b"x", key="mp1")
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir))
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    msgs = log_messages(logfile(archive))
    steps = ["INFO: backup mode: snapshot", "INFO: suspend vm to make snapshot",
             "INFO: create storage snapshot 'vzdump'", "INFO: resume vm"]  # fmt: skip
    where = [msgs.index(s) for s in steps]
    assert where == sorted(where)
    assert re.fullmatch(r"INFO: guest is online again after (<1|\d+) seconds", msgs[where[-1] + 1])
    window = frozen_window(msgs)
    for attempt in range(2):  # waited on the other test workers' disk writes: measured again
        if window < 0.2:
            break
        again = host.dumpdir / f"again{attempt}"
        again.mkdir()
        res = vzdump(str(ct.vmid), "--dumpdir", str(again))
        assert res.rc == 0, res.err
        window = frozen_window(log_messages(logfile(only_archive(again, ct.vmid))))
    assert window < 0.2
    members = names(archive)
    assert "./data/data/in-snapshot" in members and not any("scratch-file" in n for n in members)
    assert "[vzdump]" not in ct.conf() and ct.running()


@pytest.mark.parametrize("mode", ["snapshot", "suspend", "stop"])
def test_stopped_ct_in_every_mode(host: Host, mode: str) -> None:
    """§4.5: a stopped CT is archived directly; hooks get mode `stop`, no stop/restart
    phases; it stays stopped."""
    ct = host.create()
    hook = host.hook()
    res = vzdump(str(ct.vmid), "--storage", "local", "--mode", mode, "--script", str(hook))
    assert res.rc == 0, res.err
    dump = host.root / "var/lib/vz/dump"
    msgs = log_messages(logfile(only_archive(dump, ct.vmid)))
    assert "INFO: backup mode: stop" in msgs
    assert not any("sync" in m or "snapshot" in m or "stopping" in m for m in msgs)
    calls = host.hook_calls()
    # job-init runs before the storage is resolved: no DUMPDIR there yet (§4.6)
    assert (calls[0]["STOREID"], calls[0]["DUMPDIR"]) == ("local", "")
    assert {(c["STOREID"], c["DUMPDIR"]) for c in calls[1:]} == {("local", str(dump))}
    phases = [c["args"] for c in calls]
    assert phases == [
        "job-init", "job-start", f"backup-start stop {ct.vmid}", f"backup-end stop {ct.vmid}",
        f"log-end stop {ct.vmid}", "job-end",
    ]  # fmt: skip
    assert not ct.running()


def test_hook_phases_and_environment(host: Host) -> None:
    """Case 33: every phase in order for a running CT in suspend mode, with its arguments and
    VMTYPE, HOSTNAME, TARGET (from backup-start on), LOGFILE, DUMPDIR."""
    ct = host.create(start=True, hostname="web")
    hook = host.hook()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend",
                 "--script", str(hook))  # fmt: skip
    assert res.rc == 0, res.err
    archive = only_archive(host.dumpdir, ct.vmid)
    calls = host.hook_calls()
    guest = f"suspend {ct.vmid}"
    assert [c["args"] for c in calls] == [
        "job-init", "job-start", f"backup-start {guest}", f"pre-stop {guest}",
        f"pre-restart {guest}", f"post-restart {guest}", f"backup-end {guest}",
        f"log-end {guest}", "job-end",
    ]  # fmt: skip
    for call in calls[2:8]:
        assert call["VMTYPE"] == "lxc" and call["HOSTNAME"] == "web"
        assert call["TARGET"] == str(archive)
        assert call["LOGFILE"] == str(logfile(archive))
    for call in calls:
        assert call["DUMPDIR"] == str(host.dumpdir) and call["STOREID"] == ""
    for call in (calls[0], calls[1], calls[-1]):  # job phases never see a guest's variables
        assert call["VMTYPE"] == call["TARGET"] == call["LOGFILE"] == ""
        assert call["HOSTNAME"] != "web"  # (HOSTNAME may be inherited from vzdump's caller)
    # hook output: INFO lines in the guest log for guest phases, not for log-end
    msgs = log_messages(logfile(archive))
    assert "INFO: hook says backup-start" in msgs and "INFO: hook says log-end" not in msgs
    assert "INFO: hook says job-start" in res.lines and "INFO: hook says log-end" in res.lines


def test_a_ct_started_while_the_backup_waits_for_its_lock_is_backed_up_running(
    host: Host,
) -> None:
    """vzdump read 'stopped' before its lock; a pct start holding the config lock finished
    first, and the running CT was archived live in 'stop mode' (raw volumes failed to mount)."""
    ct = host.create(rootfs="local:1")
    snippets = host.root / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    marker = host.root / "pre-start-running"
    hook = snippets / "slow.sh"
    hook.write_text(f'#!/bin/sh\n[ "$2" = pre-start ] && touch {marker} && sleep 3\nexit 0\n')
    hook.chmod(0o755)
    pct("set", str(ct.vmid), "--hookscript", "local:snippets/slow.sh")
    starting = subprocess.Popen([str(BIN / "pct"), "start", str(ct.vmid)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # pct start holds the config lock, the CT is not up yet
            assert time.monotonic() < deadline and starting.poll() is None
            time.sleep(0.02)
        res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--mode", "suspend")
    finally:
        assert starting.wait(timeout=60) == 0
    assert res.rc == 0, res.err
    assert "INFO: status = stopped" in res.lines  # what it saw before the lock
    assert "INFO: status = running (changed meanwhile)" in res.lines, res.err
    assert "INFO: backup mode: suspend" in res.lines and ct.running()


def test_stop_mode_waits_for_the_loop_device_a_stop_leaves_behind(
    host: Host, tmp_path: Path
) -> None:
    """LXC reports STOPPED a moment before the kernel lets go of the container's raw volume:
    a backup that took its lock in that moment (after a concurrent pct stop) failed to mount
    it. Here the test holds the volume mounted for that moment, a little longer."""
    ct = host.create(rootfs="local:1")
    image = ct.volume()
    held = tmp_path / "held"
    held.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(held)], check=True)
    try:
        proc = subprocess.Popen(
            [str(BIN / "vzdump"), str(ct.vmid), "--dumpdir", str(host.dumpdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1.5)
    finally:
        subprocess.run(["umount", str(held)], check=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert len(archives(host.dumpdir, ct.vmid)) == 1


@pytest.mark.parametrize("mode", ["stop", "snapshot", "suspend"])
def test_a_subvolume_inside_the_volume_is_named_as_left_out(
    host: Host, btrfs: Path, mode: str
) -> None:
    """A btrfs subvolume made inside the container (docker's btrfs driver, systemd's
    /var/lib/machines) is archived as an empty directory, as on Proxmox (``--one-file-system``);
    the backup says so in its log, where Proxmox says nothing."""
    ct = host.create(rootfs="bt:0", start=mode != "stop")
    nested = ct.volume() / "var/lib/machines"
    nested.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(nested)], check=True)
    try:
        ct.write("var/lib/machines/image.raw", b"left out")
        ct.write("var/lib/kept", b"archived")
        res = vzdump(str(ct.vmid), "--storage", "bt", "--mode", mode)
        assert res.rc == 0, res.err
        archive = only_archive(btrfs / "dump", ct.vmid)
        msgs = log_messages(logfile(archive))
        warning = (
            "WARN: '/var/lib/machines' is another file system (a btrfs subvolume) inside "
            "rootfs: the backup holds it as an empty directory"
        )
        assert warning in msgs and warning in res.lines
        assert msgs.index(warning) < msgs.index(f"INFO: backup mode: {mode}") or mode != "snapshot"
        members = {m.name for m in tar_list(archive)}
        assert "./var/lib/kept" in members and "./var/lib/machines/image.raw" not in members
        assert members & {"./var/lib/machines", "./var/lib/machines/"}  # the empty directory
        assert res.lines[-1] == "INFO: Backup job finished successfully"
    finally:
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(nested)], check=False)
