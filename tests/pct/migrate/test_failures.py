"""A migration that fails in the middle leaves the source as it was and the target clean; a
killed one is recovered by the next command (issue 16)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.fakehost import add_storage
from tests.pct import conftest as pct_conftest
from tests.pct.conftest import Pct, run_pct

from .conftest import PCT, Far, sh
from .test_migrate import checksum, write_data

pytestmark = pytest.mark.lxc


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    """:func:`tests.pct.conftest.wait_for`, with the longer wait a second host needs."""
    return pct_conftest.wait_for(predicate, timeout)


def receiving(images: Path) -> bool:
    """The first pass's stream is arriving on the target (its snapshot exists on the source)."""
    return any(images.glob(".recv-*/*"))


def target_clean(far: Far, vmid: int) -> bool:
    images = far.root / "mnt/fbt/images" / str(vmid)
    leftovers = list(images.iterdir()) if images.is_dir() else []
    records = list((far.root / "var/lib/ctkit/migrate").glob("*.json"))
    return not far.conf(vmid).exists() and not leftovers and not records


def assert_source_as_before(pct: Pct, vmid: int, ctroot: Path, digest: str) -> None:
    assert pct("status", vmid).out == "status: running\n"
    assert "lock:" not in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    assert checksum(pct, vmid, "/data.bin") == digest
    assert not list((ctroot / "mnt/bt/images").glob(f"{vmid}/*@*"))


def start_migration(vmid: int, *extra: str) -> subprocess.Popen[str]:
    argv = [str(PCT), "migrate", str(vmid), "far", "--restart", "--target-storage", "fbt"]
    return subprocess.Popen(
        [*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_an_rsync_pass_that_fails_names_its_cause(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    """rsync's own diagnostic names the file and the cause; its last line only says "some
    files/attrs were not transferred (see previous errors)", and that was all the error
    showed. Here an xattr btrfs holds and the target's ext4 (4 KiB blocks) cannot."""
    vmid, digest = running_ct
    volume = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    sh("setfattr", "-n", "user.huge", "-v", "q" * 10000, str(volume / "data.bin"))
    res = pct("migrate", vmid, "far", "--restart", "--target-storage", "local", check=False)
    assert res.rc != 0
    line = next(ln for ln in res.out.splitlines() if ln.startswith("ERROR: migration aborted"))
    assert "exit code 23 - rsync: [receiver] " in line and '"user.huge") failed: ' in line, line
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert wait_for(lambda: target_clean(far, vmid))
    pct("stop", vmid)


def test_target_disk_full_rolls_back_both_sides(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    vmid, digest = running_ct
    # the volume is a subvolume without a size: the room check passes, the copy cannot
    filler = far.root / "mnt/fbt/filler"
    sh("dd", "if=/dev/zero", f"of={filler}", "bs=4M", "conv=fsync", check=False)  # until full
    res = pct("migrate", vmid, "far", "--restart", "--target-storage", "fbt", check=False)
    assert res.rc != 0
    assert "ERROR: migration aborted" in res.out
    assert "start container" not in res.out  # never stopped: the first pass failed
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert wait_for(lambda: target_clean(far, vmid))
    pct("stop", vmid)


def test_target_storage_filling_up_under_a_raw_volume_rolls_back_both_sides(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    # the room check passed, then the storage filled up during the copy: rsync's writes into
    # the (sparse) image still succeed into the page cache, only their write-back fails. The
    # source must not be deleted as if the target held the data.
    small = far.root / "mnt/small"
    small.mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "-o", "size=400m", "small", str(small))
    try:
        add_storage(far.root, "dir: small\n\tpath /mnt/small\n\tcontent rootdir\n")
        pct("create", vmid, busybox_template, "--rootfs", "local:0.3", "--unprivileged", "0")
        before = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
        argv = [str(PCT), "migrate", str(vmid), "far", "--target-storage", "small"]
        proc = subprocess.Popen(
            [*argv, "--bwlimit", "256"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        mounts = far.root / "run/ctkit/migrate"
        assert wait_for(lambda: any(mounts.glob(f"mnt-{vmid}-*")))
        sh("dd", "if=/dev/zero", f"of={small}/filler", "bs=1M", check=False)  # until full
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, out
        assert "ERROR: migration aborted" in out
        assert f"unable to write volume 'vm-{vmid}-disk-0.raw'" in out, out
        assert (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text() == before
        assert (ctroot / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-0.raw").is_file()
        assert wait_for(lambda: not far.conf(vmid).exists() and not list(small.rglob("*disk*")))
    finally:
        sh("umount", str(small), check=False)


def test_connection_cut_mid_copy_rolls_back_both_sides(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    vmid, digest = running_ct
    proc = start_migration(vmid, "--bwlimit", "4096")
    recv = far.root / f"mnt/fbt/images/{vmid}"
    assert wait_for(lambda: receiving(recv))
    # kill every sshd in the namespace: the listener and the sessions carrying the migration
    for pid in sh("ip", "netns", "pids", far.netns).stdout.split():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile (before the open, or between the open and the read)
        if name == "sshd":
            with_suppress_kill(int(pid))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert wait_for(lambda: target_clean(far, vmid)), list(recv.iterdir())
    pct("stop", vmid)


def with_suppress_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_killed_migration_is_recovered_by_the_next_one(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    vmid, digest = running_ct
    proc = start_migration(vmid, "--bwlimit", "4096")
    recv = far.root / f"mnt/fbt/images/{vmid}"
    assert wait_for(lambda: receiving(recv))
    proc.kill()  # no cleanup at all on the source
    proc.communicate()
    assert "lock: migrate" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    # the target notices its control connection ended and rolls back by itself
    assert wait_for(lambda: target_clean(far, vmid))
    res = pct("migrate", vmid, "far", "--restart", "--target-storage", "fbt")
    assert f"CT {vmid}: migration (pid {proc.pid}) died in phase 'copy'" in res.out
    assert far.pct("status", vmid).out == "status: running\n"
    assert checksum(far.pct, vmid, "/data.bin") == digest
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    far.pct("stop", vmid)


def test_target_refusing_to_start_it_rolls_back_and_restarts_the_source(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path, btrfs_storage: str
) -> None:
    bridge = f"mgsr{vmid % 100000}"
    sh("ip", "link", "add", bridge, "type", "bridge")
    try:
        pct(
            "create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0",
            "--unprivileged", "0", "--net0", f"name=eth0,bridge={bridge}",
        )  # fmt: skip
        pct("start", vmid)
        digest = write_data(pct, vmid, "/data.bin", mib=40)
        argv = [str(PCT), "remote-migrate", str(vmid), "far", "--restart", "--bwlimit", "4096"]
        argv += ["--target-storage", "fbt", "--target-bridge", far.bridge]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert wait_for(lambda: receiving(far.root / f"mnt/fbt/images/{vmid}"))
        # the bridge checked before the copy is gone when the target starts the container
        sh("ip", "netns", "exec", far.netns, "ip", "link", "del", far.bridge)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode != 0, out
        # pct start on the target refuses up front: the bridge is checked before LXC runs
        assert f"net0: bridge '{far.bridge}' does not exist" in out, out
        assert f"start container {vmid} again on the source" in out
        assert_source_as_before(pct, vmid, ctroot, digest)
        assert wait_for(lambda: target_clean(far, vmid))
        pct("stop", vmid)
    finally:
        sh("ip", "link", "del", bridge, check=False)


def slow_receivers(far: Far, tmp_path: Path, seconds: int) -> None:
    """The remote's pct as the source runs it, with every ``recv-btrfs`` slow to start (as a
    loaded or distant host is): the source's first pass waits for its receiver."""
    wrapper = tmp_path / "slow-recv-pct"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" recv-btrfs "*) sleep {seconds} ;; esac\nexec {PCT} "$@"\n'
    )
    wrapper.chmod(0o755)
    run_pct("remote", "remove", "far")
    run_pct(
        "remote", "add", "far", "--host", far.address, "--hostkey-file", far.hostkey,
        "--identity", far.identity, "--command", wrapper, "--root", far.root,
    )  # fmt: skip


def test_interrupted_while_its_receiver_starts_it_ends_at_once_and_rolls_back(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path, tmp_path: Path
) -> None:
    # the source left the waiting receiver's input open: its connection never ended, and the
    # abort waited 30 s for it before killing it
    vmid, digest = running_ct
    slow_receivers(far, tmp_path, 4)
    proc = start_migration(vmid)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("container is running - copying"):
            break
    time.sleep(0.5)  # the snapshot is taken; the first pass waits for its receiver
    proc.terminate()
    start = time.monotonic()
    out = line + proc.communicate(timeout=120)[0]
    assert time.monotonic() - start < 10, out
    assert proc.returncode == 130, out
    assert "ERROR: migration aborted: interrupted by signal\n" in out
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert wait_for(lambda: target_clean(far, vmid))
    pct("stop", vmid)


def hookscript(root: Path, body: str) -> None:
    snippets = root / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    (snippets / "hook.sh").write_text(f"#!/bin/sh\n{body}\nexit 0\n")
    (snippets / "hook.sh").chmod(0o755)


def slow_commit(pct: Pct, far: Far, vmid: int, ctroot: Path) -> Path:
    """The target's start of the migrated container (the commit) takes 2 s: a hook script
    that does nothing on the source, and waits on the target after touching the file this
    returns."""
    starting = far.root / "starting"
    hookscript(ctroot, "")
    hookscript(far.root, f'[ "$2" = pre-start ] && touch {starting} && sleep 2')
    pct("set", vmid, "--hookscript", "local:snippets/hook.sh")
    return starting


def test_ctrl_c_during_the_commit_waits_for_it_and_finishes_the_migration(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    # the terminal's Ctrl-C went to the SSH link too: the commit's answer was lost, and the
    # source stayed stopped and locked with the target's state unknown
    vmid, digest = running_ct
    starting = slow_commit(pct, far, vmid, ctroot)
    argv = [str(PCT), "migrate", str(vmid), "far", "--restart", "--target-storage", "fbt"]
    # a terminal's foreground job: its own process group, which Ctrl-C signals as a whole
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0
    )
    assert wait_for(starting.exists, timeout=120)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "interrupted after the commit began - the target has the container: finished" in out
    assert "migration finished successfully" in out
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    assert not (ctroot / f"mnt/bt/images/{vmid}").exists()
    assert "lock:" not in far.conf(vmid).read_text()
    assert far.pct("status", vmid).out == "status: running\n"
    assert checksum(far.pct, vmid, "/data.bin") == digest
    far.pct("stop", vmid)


def children(pid: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((int(entry.name), (entry / "cmdline").read_bytes()))
    return found


def test_a_link_cut_in_the_commit_is_settled_by_asking_the_target(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    # the commit's answer never came: the source cannot know whether the target has the
    # container. It asks the target (by the migration's token), now or at the next command,
    # and ends up with exactly one copy, running, and no lock - whichever the answer
    vmid, digest = running_ct
    starting = slow_commit(pct, far, vmid, ctroot)
    proc = start_migration(vmid)
    assert wait_for(starting.exists, timeout=120)
    for pid, argv in children(proc.pid):
        if b"migrate-target session" in argv:  # (ssh's remote command line)
            with_suppress_kill(pid)  # the session's SSH connection
    out, _ = proc.communicate(timeout=120)
    assert "WARN: the commit's answer was lost: migration session on remote 'far' failed" in out
    # a target that answers 'committed' when asked: the migration is finished (it exited 11,
    # and a script retried a migration that had happened); else the next command settles it
    finished = "remote 'far' committed the migration - finishing it" in out
    assert (proc.returncode == 0) is finished, out

    def settled() -> bool:
        pct("status", vmid, check=False)  # the next command: recovers when the target is done
        conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
        return not conf.exists() or "lock:" not in conf.read_text()

    assert wait_for(settled, timeout=60)
    here = (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    assert wait_for(lambda: far.conf(vmid).exists() != here)  # one copy
    runner = pct if here else far.pct
    assert runner("status", vmid).out == "status: running\n"
    assert (
        "lock:" not in (ctroot / f"etc/pve/lxc/{vmid}.conf" if here else far.conf(vmid)).read_text()
    )
    assert checksum(runner, vmid, "/data.bin") == digest
    if here:
        assert wait_for(lambda: target_clean(far, vmid))
    else:
        assert not (ctroot / f"mnt/bt/images/{vmid}").exists()
    runner("stop", vmid)
