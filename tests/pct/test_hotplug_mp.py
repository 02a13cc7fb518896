"""Mount points hot-plugged into a running container (a new volume, a bind and a device mount)
and removed from it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from shared.testbed import loops_below
from tests.pct.conftest import PCT, Pct, holding_tool, sigkill_group_when

pytestmark = pytest.mark.lxc


@pytest.fixture
def ext4_loop(tmp_path: Path) -> Iterator[str]:
    """A loop device with an ext4 file system holding ``hello`` (content ``dev``)."""
    image = tmp_path / "dev.img"
    with open(image, "wb") as fh:
        fh.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    dev = subprocess.run(["losetup", "--show", "-f", str(image)], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    (mnt / "hello").write_text("dev\n")
    subprocess.run(["umount", str(mnt)], check=True)
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _mounts(pct: Pct, vmid: int) -> str:
    return pct("exec", vmid, "--", "cat", "/proc/mounts").out


@pytest.mark.parametrize("unprivileged", ["0", "1"])
def test_new_mount_points_on_a_running_ct(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    tmp_path: Path,
    ext4_loop: str,
    conf_text: Callable[[int], str],
    ctroot: Path,
    unprivileged: str,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "note").write_text("bind\n")
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", unprivileged)
    pct("start", vmid)
    pct("set", vmid, "--mp0", "local:1,mp=/data", "--mp1", f"{shared},mp=/mnt/shared,ro=1",
        "--mp2", f"{ext4_loop},mp=/devmp")  # fmt: skip
    text = conf_text(vmid)
    assert "pve:pending" not in text
    assert f"mp0: local:{vmid}/vm-{vmid}-disk-1.raw,mp=/data,size=1G\n" in text
    mounts = _mounts(pct, vmid)
    assert " /data ext4 rw" in mounts and " /mnt/shared " in mounts and " /devmp ext4" in mounts
    # the new volume is writable, the read-only bind mount is not
    pct("exec", vmid, "--", "sh", "-c", "echo data > /data/f && cat /data/f")
    assert pct("exec", vmid, "--", "cat", "/mnt/shared/note").out == "bind\n"
    res = pct("exec", vmid, "--", "sh", "-c", "echo x > /mnt/shared/new", check=False)
    assert res.rc != 0 and "Read-only" in res.err
    assert pct("exec", vmid, "--", "cat", "/devmp/hello").out == "dev\n"
    # the container may unmount its copy; the staged mount keeps the volume attached
    pct("exec", vmid, "--", "umount", "/data", check=unprivileged == "0")
    _removals(pct, vmid, conf_text, ctroot)
    pct("stop", vmid)  # the pct fixture then checks that no mount or loop device is left


def _loops_released(root: Path) -> bool:
    """No loop device backed by a file below ``root`` (autoclear frees them asynchronously)."""
    deadline = time.monotonic() + 3
    while loops_below(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not loops_below(root)


def _removals(pct: Pct, vmid: int, conf_text: Callable[[int], str], ctroot: Path) -> None:
    """Removing mount points from the running CT: hot-plugged ones, a busy one, one from start."""
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    pct("set", vmid, "--delete", "mp0,mp1,mp2")
    text = conf_text(vmid)
    assert "pve:pending" not in text and f"unused0: {volid}\n" in text and "\nmp" not in text
    mounts = _mounts(pct, vmid)
    assert " /data " not in mounts and " /mnt/shared " not in mounts and " /devmp " not in mounts
    assert _loops_released(ctroot)  # nothing in the monitor either: loop devices released
    pct("set", vmid, "--delete", "unused0")  # the volume can go at once
    assert not list((ctroot / "var/lib/vz/images").glob(f"{vmid}/vm-*"))
    # busy: refused and pending; free, it goes
    pct("set", vmid, "--mp3", "local:1,mp=/busy")
    script = "cd /busy && sleep 600 </dev/null >/dev/null 2>&1 & echo $!"
    sleeper = pct("exec", vmid, "--", "sh", "-c", script).out.strip()
    res = pct("set", vmid, "--delete", "mp3", check=False)
    assert res.rc != 0
    assert f"unable to hotplug mp3: mount point /busy is busy in CT {vmid}" in res.err
    assert "del mp3: " in pct("pending", vmid).out and " /busy " in _mounts(pct, vmid)
    pct("exec", vmid, "--", "kill", sleeper)
    pct("set", vmid, "--delete", "mp3")
    assert " /busy " not in _mounts(pct, vmid) and "pve:pending" not in conf_text(vmid)
    assert "unused0: " in conf_text(vmid) and _loops_released(ctroot)
    # mounted at start (an unprivileged CT's through a staging directory, so it is not locked)
    pct("set", vmid, "--mp4", "local:1,mp=/early", "--mp5", "local:0.1,mp=/early/inner")
    pct("stop", vmid)
    pct("start", vmid)
    res = pct("set", vmid, "--delete", "mp4", check=False)  # busy: a mount below it
    assert res.rc != 0 and "mount point /early is busy" in res.err
    pct("set", vmid, "--delete", "mp5")
    pct("set", vmid, "--delete", "mp4")
    assert " /early" not in _mounts(pct, vmid) and "pve:pending" not in conf_text(vmid)
    assert _loops_released(ctroot)


def test_unused_volume_back_and_refused_hotplugs(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str], tmp_path: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    pct("set", vmid, "--delete", "mp0")
    assert f"unused0: {volid}\n" in conf_text(vmid)
    pct("start", vmid)
    # an unused volume is hot-plugged back
    pct("set", vmid, "--mp0", f"{volid},mp=/back")
    text = conf_text(vmid)
    assert f"mp0: {volid},mp=/back,size=1G\n" in text and "unused0" not in text
    assert " /back ext4 rw" in _mounts(pct, vmid)
    images = tmp_path / "root/var/lib/vz/images" / str(vmid)
    # a symlink inside the container must never lead the mount elsewhere; the new volume goes
    pct("exec", vmid, "--", "ln", "-s", "/etc", "/trap")
    res = pct("set", vmid, "--mp1", "local:1,mp=/trap/x", check=False)
    assert res.rc != 0 and "unable to hotplug mp1:" in res.err
    assert "[pve:pending]\nmp1: local:1,mp=/trap/x\n" in conf_text(vmid)
    assert [p.name for p in images.glob("vm-*")] == [f"vm-{vmid}-disk-1.raw"]
    # a bind mount of a missing host directory is refused the same way
    res = pct("set", vmid, "--mp2", f"{tmp_path}/absent,mp=/x", check=False)
    assert res.rc != 0 and "does not exist" in res.err
    # quota=1 where it cannot work (an unprivileged CT): refused as at start, nothing allocated
    res = pct("set", vmid, "--mp3", "local:1,mp=/q,quota=1", check=False)
    assert res.rc != 0
    assert "unable to hotplug mp3: Quotas are not supported by unprivileged containers." in res.err
    assert "\nmp3: local:1,mp=/q,quota=1\n" in conf_text(vmid).split("[pve:pending]")[1]
    assert [p.name for p in images.glob("vm-*")] == [f"vm-{vmid}-disk-1.raw"]
    pct("stop", vmid)


def test_a_volume_another_mount_point_uses_is_refused(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """Accepted, the second mount of the raw volume failed on its ext4's multi-mount check at
    hot-plug and at every start after, with only mount's exit code 32 to say why."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:0.05,mp=/a")
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    message = f"volume '{volid}' is already used by 'mp0'"
    before = conf_text(vmid)
    res = pct("set", vmid, "--mp1", f"{volid},mp=/b", check=False)
    assert res.rc == 2 and res.err.splitlines()[0] == message, res.text
    pct("start", vmid)
    res = pct("set", vmid, "--mp1", f"{volid},mp=/b", check=False)
    assert res.rc == 2 and res.err.splitlines()[0] == message, res.text
    assert conf_text(vmid) == before
    pct("stop", vmid)
    pct("set", vmid, "--delete", "mp0", "--mp1", f"{volid},mp=/b")  # moved to another path
    text = conf_text(vmid)
    assert f"mp1: {volid},mp=/b," in text and "mp0:" not in text and "unused" not in text
    pct("start", vmid)
    assert " /b ext4 rw" in _mounts(pct, vmid)
    pct("stop", vmid)


def test_a_raw_volume_another_container_mounts_is_named_in_use(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path
) -> None:
    """Shared with a running container, the raw volume did not mount ("exit code 32"): its
    ext4 is mounted only once, and the error says so (after the waits for a release and for
    the kernel's multi-mount check, about 35 s)."""
    owner, user = new_vmid(), new_vmid()
    pct("create", owner, busybox_template, "--rootfs", "local:0", "--mp0", "local:0.05,mp=/a")
    pct("create", user, busybox_template, "--rootfs", "local:0")
    volid = f"local:{owner}/vm-{owner}-disk-1.raw"
    pct("set", user, "--mp0", f"{volid},mp=/b")
    pct("start", owner)
    res = pct("start", user, check=False)
    assert res.rc != 0
    assert "is in use (on /dev/loop" in res.text and "is mounted only once" in res.text, res.text
    pct("stop", owner)
    pct("start", user)  # once the owner let go
    pct("stop", user)


def test_deleting_a_mount_point_another_one_covers_waits_for_the_stop(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """Two mount points at one path: the delete of the lower one unmounted the upper one (an
    unmount takes what is on top), and the guest went on writing into the volume the config
    now called unusedN."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    pct("set", vmid, "--mp0", "local:1,mp=/dup")
    pct("exec", vmid, "--", "sh", "-c", "echo lower > /dup/who")
    pct("set", vmid, "--mp1", "local:1,mp=/dup")
    pct("exec", vmid, "--", "sh", "-c", "echo upper > /dup/who")
    res = pct("set", vmid, "--delete", "mp0")
    assert "WARN: mp0 stays mounted until the CT stops: mp1 is mounted at /dup too" in res.err
    text = conf_text(vmid)
    assert "[pve:pending]\ndelete: mp0\n" in text, text
    assert pct("exec", vmid, "--", "cat", "/dup/who").out == "upper\n"  # mp1 still there
    pct("stop", vmid)  # the deletion is made now
    text = conf_text(vmid)
    assert "mp0:" not in text and "pve:pending" not in text
    assert f"unused0: local:{vmid}/vm-{vmid}-disk-1.raw" in text
    pct("start", vmid)
    assert pct("exec", vmid, "--", "cat", "/dup/who").out == "upper\n"
    pct("set", vmid, "--delete", "mp1")  # alone at its path now: unplugged at once
    assert "mp1:" not in conf_text(vmid) and " /dup " not in _mounts(pct, vmid)
    pct("stop", vmid)


def _kill_when(vmid: int, argv: list[str], reached: Callable[[], bool]) -> bool:
    """Run ``pct argv``, SIGKILL its process group the moment ``reached()`` holds; whether it
    did (False: the command finished first)."""
    proc = subprocess.Popen([str(PCT), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if reached():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _plugged(vmid: int, path: str) -> bool:
    pid = lxcapi.init_pid(vmid)
    try:
        return f" {path} ext4 " in Path(f"/proc/{pid}/mounts").read_text()
    except OSError:
        return False


def _named_by_config(ctroot: Path, vmid: int) -> tuple[set[str], set[str]]:
    """(the images of the CT on ``local``, the ones its config names anywhere)."""
    names = {p.name for p in (ctroot / f"var/lib/vz/images/{vmid}").glob("vm-*")}
    text = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    return names, {n for n in names if f"local:{vmid}/{n}" in text}


def test_a_hotplug_killed_after_plugging_leaves_the_volume_in_the_config(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str], ctroot: Path
) -> None:
    # the single config save came after the hot-plug: a kill in between left the volume
    # mounted in the CT but named by no config, and 'pct set --delete mp0' said 'not set'
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    argv = ["set", str(vmid), "--mp0", "local:1,mp=/mnt/x"]
    assert _kill_when(vmid, argv, lambda: _plugged(vmid, "/mnt/x"))
    names, named = _named_by_config(ctroot, vmid)
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    assert names == named == {f"vm-{vmid}-disk-1.raw"}, conf_text(vmid)
    # the next delete finds it and keeps the volume as unusedN; stopped, it can go
    pct("set", vmid, "--delete", "mp0")  # it stays mounted until the CT stops
    assert f"unused0: {volid}\n" in conf_text(vmid)
    pct("stop", vmid)
    pct("set", vmid, "--delete", "unused0")
    assert _named_by_config(ctroot, vmid) == (set(), set())
    assert "mp0" not in conf_text(vmid)


def test_a_hotplug_killed_before_plugging_is_applied_by_the_next_start(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str], ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    argv = ["set", str(vmid), "--mp0", "local:1,mp=/mnt/x"]
    assert _kill_when(vmid, argv, lambda: volid in conf.read_text())
    names, named = _named_by_config(ctroot, vmid)
    assert names == named == {f"vm-{vmid}-disk-1.raw"}, conf_text(vmid)
    pct("stop", vmid)
    pct("start", vmid)
    text = conf_text(vmid)
    assert f"mp0: {volid},mp=/mnt/x,size=1G\n" in text and "pve:pending" not in text
    assert _plugged(vmid, "/mnt/x")
    pct("stop", vmid)


@pytest.mark.parametrize(("running", "then"), [(False, "list"), (True, "set")])
def test_a_new_mount_point_killed_while_formatting_leaves_no_nameless_volume(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path, running: bool,
    then: str,
) -> None:  # fmt: skip
    """``pct set --mp0 local:1`` killed while mkfs formats the new image: the config only named
    it once it was made, so the image was left named by nothing, for good (about one kill in
    ten). Its name is now on an owner record before the image exists; the next command that
    meets the container frees it, and a new ``pct set`` then allocates afresh."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    if running:
        pct("start", vmid)
    env, marker = holding_tool(tmp_path, "mkfs.ext4", "*")
    argv = [str(PCT), "set", str(vmid), "--mp0", "local:1,mp=/mnt/x"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "mkfs")
    image = f"vm-{vmid}-disk-1.raw"
    assert _named_by_config(ctroot, vmid) == ({image}, set())
    res = pct(then, *([vmid, "--mp0", "local:1,mp=/mnt/x"] if then == "set" else []))
    assert f"CT {vmid}: freed volume 'local:{vmid}/{image}'" in res.text, res.text
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    if then == "list":
        assert _named_by_config(ctroot, vmid) == (set(), set())
        pct("set", vmid, "--mp0", "local:1,mp=/mnt/x")
    assert _named_by_config(ctroot, vmid) == ({image}, {image})
    if not running:
        pct("start", vmid)
    assert _plugged(vmid, "/mnt/x")
    pct("stop", vmid)


def test_a_start_killed_while_formatting_a_pending_mount_point_leaves_no_nameless_volume(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    """A pending ``mp0: local:1`` (as Proxmox leaves one it could not hot-plug) is allocated by
    the next start; a start killed while mkfs formats it is undone like a killed ``pct set``."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write("\n[pve:pending]\nmp0: local:1,mp=/mnt/x\n")
    env, marker = holding_tool(tmp_path, "mkfs.ext4", "*")
    proc = subprocess.Popen([str(PCT), "start", str(vmid)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "mkfs")
    image = f"vm-{vmid}-disk-1.raw"
    assert _named_by_config(ctroot, vmid) == ({image}, set())
    res = pct("start", vmid)
    assert f"CT {vmid}: freed volume 'local:{vmid}/{image}'" in res.text, res.text
    assert _named_by_config(ctroot, vmid) == ({image}, {image})
    assert _plugged(vmid, "/mnt/x")
    pct("stop", vmid)


# pct set with a pause right after the hot-plug mounted the new volume (and before the config
# records it), where the test signals it
MOUNTED_THEN_PAUSED = """
import sys
from pct import cli
from pct.ops import hotplug
from tests.midway import hold

real = hotplug.hotplug_mount

def mounted(*args, **kwargs):
    real(*args, **kwargs)
    print("mounted", flush=True)
    hold()

hotplug.hotplug_mount = mounted
sys.argv = ["pct", "set", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_a_hotplug_and_its_record_waits_for_the_record(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str], sig: int
) -> None:
    """A TERM or Ctrl-C after the new mount point was mounted, before the config said so: the
    command ended with the volume mounted and the config calling it pending, and the same
    command again mounted a second volume over the first. The signal now acts once the
    config records what was done."""
    from tests.midway import signal_midway, stopped_midway

    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    proc, line = stopped_midway(MOUNTED_THEN_PAUSED, str(vmid), "--mp0", "local:1,mp=/mnt/x")
    try:
        assert line == "mounted", line
        signal_midway(proc, sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    text = conf_text(vmid)
    assert f"mp0: local:{vmid}/vm-{vmid}-disk-1.raw,mp=/mnt/x,size=1G\n" in text, text
    assert "pve:pending" not in text
    pid = lxcapi.init_pid(vmid)
    assert Path(f"/proc/{pid}/mounts").read_text().count(" /mnt/x ext4 ") == 1
    pct("stop", vmid)


def test_a_mount_point_a_killed_hotplug_left_mounted_is_not_covered_by_another(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str], ctroot: Path
) -> None:
    """kill -9 between the mount and the save left the volume mounted and the config calling
    it pending; the same command again mounted a second new volume over it, the first became
    unused0 while mounted, and what the guest wrote there went out of its sight. The command
    again is refused now, and the volume that is there, given again, is taken as it is."""
    from tests.midway import stopped_midway

    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    proc, line = stopped_midway(MOUNTED_THEN_PAUSED, str(vmid), "--mp0", "local:1,mp=/mnt/x")
    try:
        assert line == "mounted", line
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    first = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    assert first in conf_text(vmid).split("[pve:pending]")[1], conf_text(vmid)
    pid = lxcapi.init_pid(vmid)
    res = pct("set", vmid, "--mp0", "local:1,mp=/mnt/x", check=False)
    assert res.rc != 0 and f"'{first}' is mounted at /mnt/x" in res.err, res.text
    assert Path(f"/proc/{pid}/mounts").read_text().count(" /mnt/x ext4 ") == 1
    assert not (ctroot / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-2.raw").exists()
    pct("set", vmid, "--mp0", f"{first},mp=/mnt/x")
    text = conf_text(vmid)
    assert f"mp0: {first},mp=/mnt/x" in text and "pve:pending" not in text, text
    assert "unused" not in text
    assert Path(f"/proc/{pid}/mounts").read_text().count(" /mnt/x ext4 ") == 1
    pct("stop", vmid)
