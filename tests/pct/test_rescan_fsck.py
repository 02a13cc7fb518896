"""pct rescan adds orphan volumes as unusedN (and --dryrun changes nothing); pct fsck repairs a
damaged ext4 image of a stopped container and refuses what Proxmox refuses."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

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
