"""A migration killed outright (SIGKILL, no cleanup) is recovered by the next command on the
host where it died, whatever that command is (issue 16: the dead-owner rule of backups)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from tests.pct.conftest import Pct, live_pids

from .conftest import PCT, Far, sh
from .test_failures import (
    assert_source_as_before,
    receiving,
    start_migration,
    target_clean,
    wait_for,
)
from .test_migrate import checksum, write_data

pytestmark = pytest.mark.lxc


def out_record(ctroot: Path, vmid: int) -> dict[str, object]:
    try:
        data = json.loads((ctroot / f"var/lib/ctkit/migrate/out-{vmid}.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def test_killed_while_copying_the_next_status_unlocks_and_drops_its_snapshots(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    vmid, digest = running_ct
    proc = start_migration(vmid, "--bwlimit", "4096")
    assert wait_for(lambda: receiving(far.root / f"mnt/fbt/images/{vmid}"))
    proc.kill()
    proc.communicate()
    assert "lock: migrate" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    assert list((ctroot / "mnt/bt/images").glob(f"{vmid}/*@ctkit-migrate1"))
    res = pct("status", vmid)
    assert f"CT {vmid}: migration (pid {proc.pid}) died in phase 'copy'" in res.err
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert not (ctroot / f"var/lib/ctkit/migrate/out-{vmid}.json").exists()
    images = far.root / "mnt/fbt/images" / str(vmid)
    assert wait_for(lambda: target_clean(far, vmid)), (
        list(images.iterdir()) if images.is_dir() else [],
        list((far.root / "var/lib/ctkit/migrate").glob("*")),
        far.conf(vmid).exists(),
        sh("ip", "netns", "exec", far.netns, "ps", "-eo", "pid,args").stdout,
    )
    pct("stop", vmid)


def test_killed_while_the_ct_is_down_the_next_start_brings_it_back(
    pct: Pct,
    far: Far,
    running_ct: tuple[int, str],
    ctroot: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vmid, digest = running_ct
    # the last incremental send (the CT down) waits a moment: on a loaded machine the whole
    # rest of the migration, commit included, could pass between two looks of this test
    real = subprocess.run(["sh", "-c", "command -v btrfs"], capture_output=True, text=True)
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "btrfs").write_text(
        f'#!/bin/sh\ncase "$*" in "send -q -p "*) sleep 3;; esac\nexec {real.stdout.strip()} "$@"\n'
    )
    (fakebin / "btrfs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:{os.environ['PATH']}")
    proc = start_migration(vmid, "--timeout", "30")

    # the record says "stopped" just before the shutdown begins: kill once it has begun
    def shutting_down() -> bool:
        return out_record(ctroot, vmid).get("stopped") is True and lxcapi.state(vmid) != "RUNNING"

    assert wait_for(shutting_down, timeout=120)
    proc.kill()
    proc.communicate()
    assert wait_for(lambda: lxcapi.state(vmid) == "STOPPED", timeout=60)
    res = pct("start", vmid)
    assert "restarted the container the migration had stopped" in res.text
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert wait_for(lambda: target_clean(far, vmid))
    pct("stop", vmid)


def session_pids(far: Far) -> list[int]:
    return _far_pids(far, lambda argv: b"migrate-target" in argv and b"session" in argv)


def _far_pids(far: Far, matches: Callable[[list[bytes]], bool]) -> list[int]:
    """The processes on the target whose arguments ``matches``."""
    found = []
    for pid in sh("ip", "netns", "pids", far.netns).stdout.split():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if matches(argv):
                found.append(int(pid))
    return found


def test_a_killed_session_is_rolled_back_by_the_next_command_on_the_target(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    vmid, digest = running_ct
    proc = start_migration(vmid, "--bwlimit", "4096")
    recv = far.root / f"mnt/fbt/images/{vmid}"
    assert wait_for(lambda: receiving(recv))
    for pid in session_pids(far):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=180)
    # the source finds the session gone at the latest when it commits, and puts itself back
    assert proc.returncode != 0, out
    assert_source_as_before(pct, vmid, ctroot, digest)
    # the target's half: the reserved config, a volume and what was received into it
    # the receivers see their streams end (the killed session's, and ones it left)
    assert wait_for(lambda: not _far_pids(far, lambda argv: b"receive" in argv))
    assert far.conf(vmid).exists() and any(recv.iterdir())
    res = far.pct("list")
    assert f"CT {vmid}: rolling back an interrupted migration" in res.text
    assert target_clean(far, vmid), list(recv.iterdir())
    pct("stop", vmid)


def test_a_session_lost_during_the_downtime_starts_the_source_again(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    """The session dies once the CT is going down: the final pass may still reach receivers
    that were checked before, but nothing was committed, so the source runs again."""
    vmid, digest = running_ct
    proc = start_migration(vmid, "--timeout", "30")
    assert wait_for(lambda: out_record(ctroot, vmid).get("stopped") is True, timeout=120)
    for pid in session_pids(far):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, out
    assert "state on the target unknown" not in out, out
    assert f"start container {vmid} again on the source" in out, out
    assert_source_as_before(pct, vmid, ctroot, digest)
    far.pct("list")  # the target's next command rolls its half back
    assert wait_for(lambda: target_clean(far, vmid))
    pct("stop", vmid)


def rsync_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text() == "rsync\n":
                found.append(int(entry.name))
    return found


def test_killed_while_rsync_copies_stops_the_copy_and_leaves_no_volume_on_the_target(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    # a raw volume goes by rsync into the volume the target mounted for it: a killed migration
    # must not leave that rsync running (at --bwlimit, as long as the data lasts), nor the
    # volume on the target, which the rollback found in use while the rsync ran
    pct("create", vmid, busybox_template, "--rootfs", "local:1", "--unprivileged", "0")
    pct("start", vmid)
    digest = write_data(pct, vmid, "/data.bin", mib=40)
    before = set(rsync_pids())
    argv = [str(PCT), "migrate", str(vmid), "far", "--restart", "--target-storage", "local"]
    proc = subprocess.Popen(
        [*argv, "--bwlimit", "1024"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    mounts = far.root / "run/ctkit/migrate"
    if not wait_for(lambda: any(mounts.glob(f"mnt-{vmid}-*")) and set(rsync_pids()) - before):
        proc.kill()
        pytest.fail(f"the rsync pass did not start:\n{proc.communicate()[0]}")
    proc.kill()
    proc.communicate()
    assert wait_for(lambda: not set(rsync_pids()) - before, timeout=10), "rsync still runs"
    images = far.root / f"var/lib/vz/images/{vmid}"
    assert wait_for(lambda: target_clean_dir(far, vmid)), (
        list(images.iterdir()) if images.is_dir() else []
    )
    res = pct("status", vmid)
    assert f"CT {vmid}: migration (pid {proc.pid}) died in phase 'copy'" in res.err
    assert_source_as_before(pct, vmid, ctroot, digest)
    pct("stop", vmid)


def target_clean_dir(far: Far, vmid: int) -> bool:
    images = far.root / f"var/lib/vz/images/{vmid}"
    leftovers = list(images.iterdir()) if images.is_dir() else []
    records = list((far.root / "var/lib/ctkit/migrate").glob("*"))
    staging = list((far.root / "run/ctkit/migrate").glob("*"))
    return not far.conf(vmid).exists() and not leftovers and not records and not staging


def test_a_source_that_crashed_mid_migration_is_recovered_after_the_reboot(
    pct: Pct, far: Far, running_ct: tuple[int, str], ctroot: Path
) -> None:
    """The record is on disk beside the lock and the snapshots it explains: after a crash and
    reboot (every container stopped, /run emptied, another boot id) the first command drops
    them, and the container starts as before."""
    vmid, digest = running_ct
    proc = start_migration(vmid, "--bwlimit", "4096")
    assert wait_for(lambda: receiving(far.root / f"mnt/fbt/images/{vmid}"))
    proc.kill()
    proc.communicate()
    sh("lxc-stop", "-P", str(ctroot / "var/lib/lxc"), "-n", str(vmid), "--kill")
    sh("rm", "-rf", "--one-file-system", str(ctroot / "run"))
    path = ctroot / f"var/lib/ctkit/migrate/out-{vmid}.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, boot="0" * 8 + "-0000-4000-8000-" + "0" * 12)))
    assert "lock: migrate" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    res = pct("start", vmid)
    assert f"CT {vmid}: migration (pid {proc.pid}) died in phase 'copy'" in res.text, res.text
    assert_source_as_before(pct, vmid, ctroot, digest)
    assert not path.exists()
    assert wait_for(lambda: target_clean(far, vmid))


def test_killed_while_a_raw_volume_is_mounted_to_copy_leaves_it_free(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """A stopped container's raw volume is mounted read-only here for its copy. That mount was
    the host's: a migration killed then left it, with its loop device, and the next migration
    committed on the target but could not remove the source (half removed, locked for good)."""
    from shared.storage.loop import devices_for

    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data",
        "--unprivileged", "0")  # fmt: skip
    pct("start", vmid)
    digest = write_data(pct, vmid, "/data/blob.bin", mib=16)
    pct("stop", vmid)
    image = ctroot / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-1.raw"
    argv = [str(PCT), "migrate", str(vmid), "far", "--target-storage", "local"]
    proc = subprocess.Popen(
        [*argv, "--bwlimit", "2048"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait_for(lambda: bool(devices_for(image))):
        proc.kill()
        pytest.fail(f"the raw volume was not mounted:\n{proc.communicate()[0]}")
    time.sleep(0.5)  # into its rsync pass
    proc.kill()
    proc.communicate()
    res = pct("status", vmid)
    assert res.out == "status: stopped\n", res.text
    assert wait_for(lambda: not devices_for(image), timeout=10), devices_for(image)
    assert str(ctroot / "run/ctkit/migrate") not in Path("/proc/mounts").read_text()
    res = pct("migrate", vmid, "far", "--target-storage", "local")
    assert "migration finished successfully" in res.out, res.text
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    assert not (ctroot / f"var/lib/vz/images/{vmid}").exists()
    far.pct("start", vmid)
    assert checksum(far.pct, vmid, "/data/blob.bin") == digest
    far.pct("stop", vmid)


def _target_rsync(vmid: int) -> int | None:
    """The target's ``pct migrate-target rsync`` process of ``vmid`` (this host's pids)."""
    pids = live_pids(
        lambda args: b"migrate-target" in args and b"rsync" in args and str(vmid).encode() in args
    )
    return pids[0] if pids else None


def test_a_killed_copy_on_the_target_leaves_nothing_there(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """The target's copy process mounts the volume it fills. Killed, it left that mount, and
    the session's rollback could not free the volume: mount and volume stayed for good."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1", "--unprivileged", "0")
    pct("start", vmid)
    digest = write_data(pct, vmid, "/data.bin", mib=16)
    pct("stop", vmid)
    argv = [str(PCT), "migrate", str(vmid), "far", "--target-storage", "local"]
    proc = subprocess.Popen(
        [*argv, "--bwlimit", "2048"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait_for(lambda: _target_rsync(vmid) is not None):
        proc.kill()
        pytest.fail(f"no copy on the target:\n{proc.communicate()[0]}")
    time.sleep(0.5)  # into its rsync pass
    pid = _target_rsync(vmid)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, out
    assert wait_for(lambda: target_clean_dir(far, vmid)), (
        list((far.root / f"var/lib/vz/images/{vmid}").glob("*")),
        list((far.root / "var/lib/ctkit/migrate").glob("*")),
        list((far.root / "run/ctkit/migrate").glob("*")),
    )
    assert pct("status", vmid).out == "status: stopped\n"
    pct("start", vmid)
    assert checksum(pct, vmid, "/data.bin") == digest
    pct("stop", vmid)
