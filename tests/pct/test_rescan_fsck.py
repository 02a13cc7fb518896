"""pct rescan adds orphan volumes as unusedN (and --dryrun changes nothing); pct fsck repairs a
damaged ext4 image of a stopped container and refuses what Proxmox refuses."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pct.conftest import PCT, Pct, live_pids, wait_for, wait_while_running

pytestmark = pytest.mark.lxc


def test_rescan_finds_an_orphan_volume(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    ctroot: Path,
    images: Callable[[int], Path],
    conf_text: Callable[[int], str],
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    orphan = images(vmid) / f"vm-{vmid}-disk-5.raw"
    with open(orphan, "wb") as fh:
        fh.truncate(1 << 20)
    before = conf_text(vmid)
    res = pct("rescan", "--dryrun")
    assert res.out.splitlines() == [
        "NOTE: running in dry-run mode, won't write changes out!",
        "rescan volumes...",
        f"CT {vmid}: add unreferenced volume 'local:{vmid}/vm-{vmid}-disk-5.raw' as 'unused0' "
        "to config.",
    ]
    assert conf_text(vmid) == before
    pct("rescan", "--vmid", vmid)
    assert f"unused0: local:{vmid}/vm-{vmid}-disk-5.raw\n" in conf_text(vmid)
    res = pct("rescan")
    assert res.out == "rescan volumes...\n"  # nothing new: idempotent


def test_rescan_and_mounts_take_no_symlink_or_fifo_for_a_volume(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    tmp_path: Path,
    images: Callable[[int], Path],
    conf_text: Callable[[int], str],
) -> None:
    """Links named like volumes (to a host image, to a host directory) and a FIFO were adopted
    as unusedN; given as mount points, the host image was mounted into the container (and
    changed by the mount) and the host directory shown in it."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    host_image, host_dir = tmp_path / "host.img", tmp_path / "hostdir"
    with open(host_image, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(host_image)], check=True)
    before = host_image.read_bytes()
    host_dir.mkdir()
    (host_dir / "secret").write_text("host only\n")
    (images(vmid) / f"vm-{vmid}-disk-5.raw").symlink_to(host_image)
    (images(vmid) / f"subvol-{vmid}-disk-6.subvol").symlink_to(host_dir)
    os.mkfifo(images(vmid) / f"vm-{vmid}-disk-7.raw")
    pct("rescan")
    assert "unused" not in conf_text(vmid)
    for key, volume in (("mp0", f"vm-{vmid}-disk-5.raw"), ("mp1", f"subvol-{vmid}-disk-6.subvol")):
        res = pct("set", vmid, f"--{key}", f"local:{vmid}/{volume},mp=/{key}", check=False)
        text = conf_text(vmid)
        if res.rc == 0:  # taken into the config: the mount refuses it
            res = pct("mount", vmid, check=False)
            assert res.rc != 0 and f"volume 'local:{vmid}/{volume}' is a symlink" in res.err
            pct("set", vmid, "--delete", key)
        else:
            assert key not in text.split("[")[0]
    assert host_image.read_bytes() == before
    assert (host_dir / "secret").read_text() == "host only\n"


def test_fsck_repairs_a_damaged_image(
    pct: Pct, vmid: int, busybox_template: Path, images: Callable[[int], Path]
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    res = pct("fsck", vmid, check=False)
    assert res.rc != 0
    assert res.err.strip() == (
        f"unable to run fsck for 'local:{vmid}/subvol-{vmid}-disk-0.subvol' (format == subvol)"
    )
    res = pct("fsck", vmid, "--device", "mp3", check=False)
    assert res.rc != 0 and res.err.strip() == "cannot run command on non-existing mount point mp3"
    image = images(vmid) / f"vm-{vmid}-disk-1.raw"
    # damage: a wrong link count on the root directory, which only a forced check notices
    subprocess.run(
        ["debugfs", "-w", "-R", "set_inode_field / links_count 7", str(image)],
        check=True, capture_output=True,
    )  # fmt: skip
    res = pct("fsck", vmid, "--device", "mp0")
    assert "clean" in res.out
    res = pct("fsck", vmid, "--device", "mp0", "--force")
    assert "FIXED" in res.out or "fixed" in res.out.lower()
    check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    pct("start", vmid)
    res = pct("fsck", vmid, "--device", "mp0", check=False)
    assert res.rc != 0 and res.err.strip() == "cannot run fsck when container is running"
    pct("stop", vmid)
    assert shutil.which("fsck")


def test_fsck_clears_the_mark_of_a_killed_check(
    pct: Pct, vmid: int, busybox_template: Path, images: Callable[[int], Path]
) -> None:
    """An e2fsck killed half-way left its MMP mark: fsck refused the image from then on
    ("MMP: e2fsck being run"). pct fsck clears a mark no running check holds, then checks."""
    from shared.storage.ext4mmp import fsck_mark
    from tests.shared.storage.test_ext4mmp import e2fsck_holding_its_mark

    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    with e2fsck_holding_its_mark(image):
        pass  # killed
    res = pct("fsck", vmid)
    assert f"cleared the mark of an interrupted e2fsck on 'local:{vmid}/" in res.out
    assert not fsck_mark(image) and "clean" in res.out


def _checkers_of(image: Path) -> list[int]:
    """The live processes whose command line names ``image`` (an fsck and its checker)."""
    return live_pids(lambda args: os.fsencode(image) in args)


def _checker_runs(image: Path) -> bool:
    """Whether fsck's checker (not only fsck) has ``image`` open."""
    for pid in _checkers_of(image):
        with contextlib.suppress(OSError):
            if b"fsck.ext4" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_fsck_interrupted_or_killed_stops_its_checker(
    pct: Pct, vmid: int, busybox_template: Path, images: Callable[[int], Path], sig: int
) -> None:
    """A TERM killed the fsck program alone (a kill -9 of pct left it too): its checker,
    fsck.ext4, went on writing the image after the command had ended, and the next mount
    failed. The checker now stops with the command, cleanly (no e2fsck mark is left)."""
    from shared.storage.ext4mmp import fsck_mark

    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    argv = [str(PCT), "fsck", str(vmid), "--force"]
    # a forced check of an MMP image waits about 10 s before it starts: the time for the kill
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        wait_while_running(proc, lambda: _checker_runs(image), "checker", timeout=30)
        os.kill(proc.pid, sig)  # the command alone, as a service manager or a user does
        _out, err = proc.communicate(timeout=30)
        if sig == signal.SIGTERM:
            assert proc.returncode == 130 and err.endswith("interrupted by signal\n"), err
        # the checker, stopped, ends at once; left alone it waits its MMP interval (about 11 s
        # from its start) and checks: 8 s tell the two apart, also on a loaded machine
        assert wait_for(lambda: not _checkers_of(image), 8), "the checker runs on after the command"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not fsck_mark(image)
    pct("mount", vmid)
    pct("unmount", vmid)
