"""pct suspend/resume (cgroup freezer) and pct template with Proxmox's refusals."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from shared.runtime.cgroups import CGroup
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


def add_line(ctroot: Path, vmid: int, line: str) -> None:
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write(line + "\n")


def drop_line(ctroot: Path, vmid: int, prefix: str) -> None:
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    kept = [ln for ln in conf.read_text().splitlines() if not ln.startswith(prefix)]
    conf.write_text("\n".join(kept) + "\n")


def test_suspend_freezes_and_resume_thaws(pct: Pct, vmid: int, busybox_template: Path) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    res = pct("suspend", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == f"CT {vmid} not running"
    res = pct("resume", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == f"CT {vmid} not running"
    pct("start", vmid)
    cgroup = CGroup(vmid)
    assert not cgroup.is_frozen()
    res = pct("resume", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == f"CT {vmid} already running"

    pct("suspend", vmid)
    assert cgroup.is_frozen()
    res = pct("suspend", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == f"CT {vmid} is already suspended"
    pct("resume", vmid)
    assert not cgroup.is_frozen()
    assert pct("exec", vmid, "--", "true").rc == 0  # it really runs again

    pct("suspend", vmid)
    pct("stop", vmid)  # a suspended CT can still be stopped
    assert not lxcapi.is_running(vmid)


def test_suspend_refuses_a_locked_container(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    add_line(ctroot, vmid, "lock: backup")
    res = pct("suspend", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == "CT is locked (backup)"
    assert not CGroup(vmid).is_frozen()
    pct("stop", vmid, "--skiplock")


def test_template_of_a_raw_volume_on_dir_storage(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    ctroot: Path,
    conf_text: Callable[[int], str],
    images: Callable[[int], Path],
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    pct("start", vmid)
    res = pct("template", vmid, check=False)
    assert res.rc != 0
    assert res.err.strip() == "you can't convert a CT to template if the CT is running"
    pct("stop", vmid)

    add_line(ctroot, vmid, "lock: backup")
    res = pct("template", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == "CT is locked (backup)"
    drop_line(ctroot, vmid, "lock:")
    add_line(ctroot, vmid, "\n[snap1]\nsnaptime: 1234567890")
    res = pct("template", vmid, check=False)
    assert res.rc != 0
    assert res.err.strip() == "unable to create template, because CT contains snapshots"
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    conf.write_text(conf.read_text().split("\n[snap1]")[0] + "\n")
    assert "base-" not in conf_text(vmid)

    pct("template", vmid)
    text = conf_text(vmid)
    assert "template: 1\n" in text
    assert f"rootfs: local:{vmid}/base-{vmid}-disk-0.raw," in text
    base = images(vmid) / f"base-{vmid}-disk-0.raw"
    assert stat.S_IMODE(base.stat().st_mode) == 0o444
    assert not (images(vmid) / f"vm-{vmid}-disk-0.raw").exists()
    assert not (ctroot / f"var/lib/lxc/{vmid}/config").exists()

    res = pct("start", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == "you can't start a CT if it's a template"
    res = pct("template", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == "you can't convert a template to a template"


def test_template_refuses_another_containers_volume_and_a_volume_named_twice(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    conf_text: Callable[[int], str],
    images: Callable[[int], Path],
) -> None:
    """Checked before the first rename: another container's raw volume became an immutable base
    volume under its owner (which then no longer started), and a volume named twice left the
    conversion half done for good."""
    owner, vmid = new_vmid(), new_vmid()
    pct("create", owner, busybox_template, "--rootfs", "local:0.05")
    pct("create", vmid, busybox_template, "--rootfs", "local:0.05")
    before = conf_text(vmid)
    theirs, mine = f"local:{owner}/vm-{owner}-disk-0.raw", f"local:{vmid}/vm-{vmid}-disk-0.raw"
    for line, message in (
        (f"mp0: {theirs},mp=/a", f"can't convert volume '{theirs}' owned by another container "
         f"({owner})"),
        (f"mp0: {mine},mp=/a", f"volume '{mine}' is used by both rootfs and mp0"),
    ):  # fmt: skip
        add_line(ctroot, vmid, line)
        res = pct("template", vmid, check=False)
        assert (res.rc, res.err) == (6, message + "\n")
        drop_line(ctroot, vmid, "mp0:")
        assert conf_text(vmid) == before
    assert [p.name for p in images(owner).iterdir()] == [f"vm-{owner}-disk-0.raw"]
    assert [p.name for p in images(vmid).iterdir()] == [f"vm-{vmid}-disk-0.raw"]
    pct("start", owner)
    pct("stop", owner)
    pct("template", vmid)  # the same container, as it was
    pct("destroy", vmid)
    pct("destroy", owner)


def test_a_templates_raw_base_volume_never_changes(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    images: Callable[[int], Path],
) -> None:
    vmid, clone = new_vmid(), new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0.2")
    pct("template", vmid)
    base = images(vmid) / f"base-{vmid}-disk-0.raw"
    try:
        flags = subprocess.run(["lsattr", str(base)], capture_output=True, text=True, check=True)
        assert "i" in flags.stdout.split()[0]  # immutable, as Proxmox makes it
        before = hashlib.sha256(base.read_bytes()).hexdigest()
        assert "rootfs" in pct("df", vmid).out
        pct("mount", vmid)
        try:
            with pytest.raises(OSError):  # read-only: root ignores the file's mode
                (ctroot / f"var/lib/lxc/{vmid}/rootfs/new-file").write_text("x")
        finally:
            pct("unmount", vmid)
        res = pct("fstrim", vmid, check=False)
        assert res.rc != 0 and "it is a template" in res.err
        assert hashlib.sha256(base.read_bytes()).hexdigest() == before
        pct("clone", vmid, clone, "--full")  # read from the immutable image
        pct("destroy", clone)
        pct("destroy", vmid)
        assert not images(vmid).exists()
    finally:
        if base.exists():  # (the test root must stay removable)
            subprocess.run(["chattr", "-i", str(base)], check=False)


def test_template_on_btrfs_makes_the_subvolume_read_only(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, btrfs_storage: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0")
    pct("template", vmid)
    subvol = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    out = subprocess.run(
        ["btrfs", "property", "get", str(subvol), "ro"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ro=true"
    with pytest.raises(OSError):
        (subvol / "new-file").write_text("x")
    assert os.path.isdir(subvol / "etc")


def test_a_snapshot_keeps_a_suspended_container_suspended(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0")
    pct("start", vmid)
    pct("snapshot", vmid, "s1")  # freezes and thaws a running CT
    assert not CGroup(vmid).is_frozen()
    pct("suspend", vmid)
    pct("snapshot", vmid, "s2")
    assert CGroup(vmid).is_frozen()  # what the user suspended stays suspended
    pct("resume", vmid)
    pct("stop", vmid)


def _template_killed_after_rename(ctroot: Path, vmid: int) -> bool:
    """Run ``pct template`` and SIGKILL it the moment its base image appears; whether the kill
    came before the config named it (else the window was missed)."""
    import signal
    import time

    from tests.pct.conftest import PCT

    base = ctroot / f"var/lib/vz/images/{vmid}/base-{vmid}-disk-0.raw"
    proc = subprocess.Popen([str(PCT), "template", str(vmid)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not os.path.lexists(base):
            if proc.poll() is not None:  # converted between two looks: the kill is too late
                assert proc.returncode == 0 and os.path.lexists(base), proc.communicate()
                return False
            assert time.monotonic() < deadline, "no base image"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return f"vm-{vmid}-disk-0.raw" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()


def test_a_template_killed_between_rename_and_save_is_finished(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """Killed after the rename vm- → base- and before the config's save, ``pct template`` left
    a config naming a volume that no longer exists. The next command finishes the conversion."""
    for _attempt in range(10):
        vmid = new_vmid()
        pct("create", vmid, busybox_template, "--rootfs", "local:1")
        if _template_killed_after_rename(ctroot, vmid):
            break
        pct("destroy", vmid)  # converted before the kill landed: try again
    else:
        pytest.fail("never killed inside the window")
    res = pct("status", vmid)
    assert res.out == "status: stopped\n"
    finished = f"CT {vmid}: finished the conversion to a template that pct template had begun"
    assert finished in res.err, res.err
    conf = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    assert "template: 1" in conf and f"local:{vmid}/base-{vmid}-disk-0.raw" in conf, conf
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    assert pct("status", vmid).err == ""  # finished once
    clone = new_vmid()
    pct("clone", vmid, clone, "--full", "1")  # a working template
    pct("destroy", clone)
    pct("destroy", vmid)
    assert not (ctroot / f"var/lib/vz/images/{vmid}").exists() or not any(
        (ctroot / f"var/lib/vz/images/{vmid}").iterdir()
    )


def test_pct_template_again_after_a_killed_one_succeeds(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """Run again after a kill, pct template had its recovery finish the conversion, and then
    refused the template it had just made: 'you can't convert a template to a template'."""
    for _attempt in range(10):
        vmid = new_vmid()
        pct("create", vmid, busybox_template, "--rootfs", "local:1")
        if _template_killed_after_rename(ctroot, vmid):
            break
        pct("destroy", vmid)
    else:
        pytest.fail("never killed inside the window")
    res = pct("template", vmid)
    assert "finished the conversion to a template" in res.text, res.text
    assert "template: 1" in (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    res = pct("template", vmid, check=False)  # a template made earlier is still refused
    assert res.rc != 0 and res.err == "you can't convert a template to a template\n"
    pct("destroy", vmid)


def test_create_and_restore_with_template_1_make_a_template(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path,
    btrfs_storage: str, conf_text: Callable[[int], str],
) -> None:  # fmt: skip
    """``--template 1``, which the option table offers: the flag was in the config while tar
    extracted, a template's volume was mounted read-only, and the create failed with 576 lines
    of 'Cannot mkdir: Read-only file system'. The container is filled first and then converted
    (base volumes, template: 1), as a restored template backup is."""
    vmid, again = new_vmid(), new_vmid()
    res = pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0",
              "--template", "1")  # fmt: skip
    assert "Convert new container to template..." in res.text
    text = conf_text(vmid)
    assert "template: 1\n" in text and "lock:" not in text, text
    # a btrfs subvolume keeps its name as a base volume, read-only (see the test above)
    subvol = ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    assert f"rootfs: {btrfs_storage}:{vmid}/subvol-{vmid}-disk-0.subvol" in text, text
    assert (subvol / "bin/busybox").is_file()
    with pytest.raises(OSError):
        (subvol / "new-file").write_text("x")
    res = pct("start", vmid, check=False)
    assert res.rc != 0 and res.err.strip() == "you can't start a CT if it's a template"
    # a template cannot be started: refused before anything is made
    res = pct("create", again, busybox_template, "--template", "1", "--start", check=False)
    assert res.rc == 2 and "start: a template cannot be started" in res.err, res.err
    assert not (ctroot / f"etc/pve/lxc/{again}.conf").exists()
    try:
        _restore_as_template(pct, new_vmid, busybox_template, ctroot, conf_text, again)
    finally:  # an immutable base image left by a failure: the test root must stay removable
        for base in (ctroot / "var/lib/vz/images").glob("*/base-*.raw"):
            subprocess.run(["chattr", "-i", str(base)], check=False)
    pct("destroy", vmid)


def _restore_as_template(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path,
    conf_text: Callable[[int], str], again: int,
) -> None:  # fmt: skip
    """A restore of a backup that was no template, given --template 1."""
    dump = ctroot / "dump"
    dump.mkdir()
    plain = new_vmid()
    pct("create", plain, busybox_template, "--rootfs", "local:0")
    subprocess.run([str(Path(sys.executable).parent / "vzdump"), str(plain), "--dumpdir",
                    str(dump)], check=True, capture_output=True)  # fmt: skip
    archive = next(dump.glob("*.tar"))
    res = pct("restore", again, archive, "--rootfs", "local:0.1", "--template", "1")
    assert "Convert restored container to template..." in res.text
    text = conf_text(again)
    assert "template: 1\n" in text and f"local:{again}/base-{again}-disk-0.raw" in text, text
    for ct in (again, plain):
        pct("destroy", ct)
