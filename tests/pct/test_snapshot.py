"""snapshot, listsnapshot, delsnapshot and rollback of real containers on a real btrfs
(spec pct.md §5, §8, §9 cases 28–32)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.ctconfig import store
from shared.ctconfig.config import Config
from tests.pct.conftest import (
    PCT,
    Pct,
    hold_post_stop,
    holding_call,
    sigkill_group_when,
    wait_group_gone,
    wait_while_running,
)

pytestmark = pytest.mark.lxc

Text = Callable[[int], str]


def subvol(ctroot: Path, vmid: int, disk: int = 0, snap: str | None = None) -> Path:
    """The btrfs subvolume of volume ``disk`` (or of its snapshot ``snap``) on storage bt."""
    at = f"@{snap}" if snap else ""
    return ctroot / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-{disk}.subvol{at}"


def volid(vmid: int, disk: int = 0) -> str:
    return f"bt:{vmid}/subvol-{vmid}-disk-{disk}.subvol"


def load(vmid: int) -> Config:
    return store.load(vmid)


def add_to_main(ctroot: Path, vmid: int, text: str) -> None:
    """Add lines to the main section (the file's first lines; appended text would land in
    the last snapshot section)."""
    path = ctroot / f"etc/pve/lxc/{vmid}.conf"
    path.write_text(text + path.read_text())


@contextlib.contextmanager
def bind_mounted(source: Path, target: Path) -> Iterator[None]:
    """Keep ``source`` busy (bind-mounted on the host) for the block."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=False)


@pytest.fixture
def bt_ct(pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str) -> int:
    """A stopped CT on btrfs: rootfs and mp0 are subvolumes."""
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:1",
        "--mp0", f"{btrfs_storage}:0,mp=/data")  # fmt: skip
    return vmid


# --- create ---------------------------------------------------------------------------------


def test_case_28_dir_storage_has_no_snapshots(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    before = conf_text(vmid)
    res = pct("snapshot", vmid, "s1", check=False)
    assert res.rc != 0 and res.err == "snapshot feature is not available\n"
    assert conf_text(vmid) == before  # refused before anything was written


def test_case_28_29_snapshot_of_a_stopped_ct(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    vmid = bt_ct
    start = int(time.time())
    pct("snapshot", vmid, "s1", "--description", "first one")
    conf = load(vmid)
    assert conf.parent == "s1" and conf.lock is None
    s1 = conf.snapshots["s1"]
    assert start <= int(s1.values["snaptime"]) <= time.time()
    assert s1.description == "first one\n"
    assert "snapstate" not in s1.values and "parent" not in s1.values
    # the section is the main config at snapshot time, minus parent/lock/description/digest
    main = {k: v for k, v in conf.values.items() if k not in ("parent", "description")}
    assert {k: v for k, v in s1.values.items() if k not in ("snaptime", "description")} == main
    text = conf_text(vmid)
    assert "\n[s1]\n#first one\n" in text and "snaptime: " in text
    for disk in (0, 1):  # rootfs and mp0 both snapshotted, read-only
        snap = subvol(ctroot, vmid, disk, "s1")
        assert snap.stat().st_ino == 256
        prop = subprocess.run(
            ["btrfs", "property", "get", str(snap), "ro"], capture_output=True, text=True
        )
        assert prop.stdout.strip() == "ro=true"

    pct("snapshot", vmid, "s2")
    assert load(vmid).snapshots["s2"].values["parent"] == "s1"
    assert load(vmid).parent == "s2"

    before = conf_text(vmid)
    for name in ("current", "vzdump"):
        res = pct("snapshot", vmid, name, check=False)
        assert res.rc != 0 and res.err == f"unable to use snapshot name '{name}' (reserved name)\n"
    res = pct("snapshot", vmid, "s1", check=False)
    assert res.rc != 0 and res.err == "snapshot name 's1' already used\n"
    res = pct("snapshot", vmid, "1st", check=False)
    assert res.rc == 2 and "snapname: invalid format - invalid configuration ID '1st'" in res.err
    assert conf_text(vmid) == before

    add_to_main(ctroot, vmid, "lock: backup\n")
    res = pct("snapshot", vmid, "s3", check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    pct("unlock", vmid)
    add_to_main(ctroot, vmid, "template: 1\n")
    res = pct("snapshot", vmid, "s3", check=False)
    assert res.rc != 0 and res.err == "you can't take a snapshot if it's a template\n"
    assert "s3" not in load(vmid).snapshots
    assert not subvol(ctroot, vmid, 0, "s3").exists()


def test_snapshot_of_a_running_ct_is_consistent(pct: Pct, bt_ct: int, ctroot: Path) -> None:
    vmid = bt_ct
    pct("start", vmid)
    pct("exec", vmid, "--", "sh", "-c", "echo live > /root/file; echo d > /data/file")
    pct("snapshot", vmid, "s1")
    assert pct("status", vmid).out == "status: running\n"  # thawed again
    assert pct("exec", vmid, "--", "cat", "/root/file").out == "live\n"
    assert (subvol(ctroot, vmid, 0, "s1") / "root/file").read_text() == "live\n"
    assert (subvol(ctroot, vmid, 1, "s1") / "file").read_text() == "d\n"
    assert load(vmid).lock is None


def test_a_snapshot_never_freezes_what_the_ct_put_at_a_mount_points_path(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str, ctroot: Path
) -> None:
    """The root of a running CT may unmount a volume and put a symlink to a host path in its
    place. The snapshot synced and froze (FIFREEZE) the file system the link resolved to on
    the host; pointed at the storage itself, the btrfs snapshot then waited for ever, and every
    write of the host to that file system with it."""
    from shared.storage import volumes

    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:1")
    raw = volumes.alloc_volume(btrfs_storage, vmid, 32 << 20, root_uid=100000, root_gid=100000,
                               fmt="raw")  # fmt: skip
    pct("set", vmid, "--mp0", f"{raw},mp=/mnt/data")  # an ext4 image: frozen while snapshotted
    pct("start", vmid)
    storage = ctroot / "mnt/bt"
    pct("exec", vmid, "--", "sh", "-c", f"umount /mnt/data && rmdir /mnt/data && "
        f"ln -s {storage} /mnt/data")  # fmt: skip
    proc = subprocess.Popen([str(PCT), "snapshot", str(vmid), "s1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        subprocess.run(["fsfreeze", "-u", str(storage)], check=False, capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, err
    assert (subvol(ctroot, vmid, 0, "s1") / "etc").is_dir()
    assert pct("status", vmid).out == "status: running\n"  # thawed again
    (storage / "written").write_text("the host writes to its storage\n")  # not frozen
    pct("stop", vmid)  # its raw volume's loop device keeps the storage busy until then


# --- rollback -------------------------------------------------------------------------------


def test_case_30_rollback_of_a_running_ct(
    pct: Pct, vmid: int, debian_template: Path, btrfs_storage: str, ctroot: Path
) -> None:
    pct("create", vmid, debian_template, "--storage", btrfs_storage, "--memory", "256",
        "--description", "main note")  # fmt: skip
    pct("start", vmid)
    pct("exec", vmid, "--", "sh", "-c", "echo before > /root/file")
    pct("snapshot", vmid, "s1", "--description", "snap note")
    snap_values = dict(load(vmid).snapshots["s1"].values)
    pct("exec", vmid, "--", "sh", "-c", "echo after > /root/file; touch /root/extra")
    pct("set", vmid, "--memory", "300", "--description", "changed note")
    add_to_main(ctroot, vmid, f"unused0: {volid(vmid, 7)}\n")

    pct("rollback", vmid, "s1")
    assert pct("status", vmid).out == "status: stopped\n"
    root = subvol(ctroot, vmid)
    assert (root / "root/file").read_text() == "before\n"
    assert not (root / "root/extra").exists()
    conf = load(vmid)
    assert conf.get("memory") == 256  # the snapshot's values ...
    assert conf.description == "changed note\n"  # ... but the current description
    assert conf.values["unused0"] == volid(vmid, 7)  # ... and unusedN
    assert conf.parent == "s1" and conf.lock is None
    expected = {k: v for k, v in snap_values.items() if k not in ("snaptime", "description")}
    expected.update(parent="s1", description="changed note\n", unused0=volid(vmid, 7))
    assert conf.values == expected
    assert conf.snapshots["s1"].values == snap_values  # the snapshot itself stays

    pct("start", vmid)
    pct("exec", vmid, "--", "sh", "-c", "echo again > /root/file")
    pct("rollback", vmid, "s1", "--start", "1")
    assert pct("status", vmid).out == "status: running\n"
    assert pct("exec", vmid, "--", "cat", "/root/file").out == "before\n"
    pct("rollback", vmid, "s1", "--start", "0")
    assert pct("status", vmid).out == "status: stopped\n"


def test_rollback_of_a_stopped_ct_moves_newer_volumes_to_unused(
    pct: Pct, bt_ct: int, ctroot: Path
) -> None:
    vmid = bt_ct
    (subvol(ctroot, vmid, 1) / "file").write_text("one\n")
    pct("snapshot", vmid, "s1")
    (subvol(ctroot, vmid, 1) / "file").write_text("two\n")
    pct("snapshot", vmid, "s2")
    pct("set", vmid, "--mp1", "bt:0,mp=/later")  # disk-2, newer than both snapshots
    (subvol(ctroot, vmid, 1) / "file").write_text("three\n")

    pct("rollback", vmid, "s1")
    assert (subvol(ctroot, vmid, 1) / "file").read_text() == "one\n"
    conf = load(vmid)
    assert "mp1" not in conf.values
    assert conf.values["unused0"] == volid(vmid, 2)
    assert subvol(ctroot, vmid, 2).is_dir()  # kept, only no longer mounted
    assert conf.parent == "s1"
    # the later snapshot survives a rollback to an earlier one and can be rolled back to
    pct("rollback", vmid, "s2")
    assert (subvol(ctroot, vmid, 1) / "file").read_text() == "two\n"
    assert load(vmid).parent == "s2"
    assert load(vmid).values["unused0"] == volid(vmid, 2)  # recorded once


def test_a_rollback_takes_the_snapshots_size_back(pct: Pct, bt_ct: int, ctroot: Path) -> None:
    """Grown after the snapshot, the subvolume kept its 2 GiB quota limit through a rollback
    while the config said size=1G: growing to 1.5G was refused as a shrink, +512M gave 2.5G."""
    vmid = bt_ct
    subprocess.run(["btrfs", "quota", "enable", str(ctroot / "mnt/bt")], check=True)
    pct("snapshot", vmid, "before")
    pct("resize", vmid, "rootfs", "2G")
    pct("rollback", vmid, "before")
    assert "size=1G" in str(load(vmid).values["rootfs"])
    pct("resize", vmid, "rootfs", "+512M")
    assert "size=1536M" in str(load(vmid).values["rootfs"])
    from shared.storage import volumes

    assert volumes.volume_size(volid(vmid)) == 1536 << 20


def test_rollback_refusals_leave_everything_as_it_was(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    vmid = bt_ct
    (subvol(ctroot, vmid) / "root/file").write_text("snap\n")
    pct("snapshot", vmid, "s1")
    (subvol(ctroot, vmid) / "root/file").write_text("now\n")

    res = pct("rollback", vmid, "s9", check=False)
    assert res.rc != 0 and res.err == "snapshot 's9' does not exist\n"

    conf_path = ctroot / f"etc/pve/lxc/{vmid}.conf"
    good = conf_path.read_text()
    conf_path.write_text(good.replace("[s1]\n", "[s1]\nsnapstate: delete\n"))
    res = pct("rollback", vmid, "s1", check=False)
    assert res.rc != 0
    assert res.err == "unable to rollback to incomplete snapshot (snapstate = delete)\n"
    conf_path.write_text(good)

    add_to_main(ctroot, vmid, "lock: backup\n")
    res = pct("rollback", vmid, "s1", check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    conf_path.write_text(good)

    # RAM state (a CT has none: a hand-made section): Proxmox's error, before anything changed
    conf_path.write_text(good.replace("[s1]\n", f"[s1]\nvmstate: bt:vm-{vmid}-state-s1\n"))
    res = pct("rollback", vmid, "s1", check=False)
    assert (res.rc, res.err) == (6, "implement me - save vmstate\n")
    assert (subvol(ctroot, vmid) / "root/file").read_text() == "now\n"
    assert "lock:" not in conf_text(vmid)
    conf_path.write_text(good)

    # a volume whose storage snapshot is missing: refused before any volume is touched
    subprocess.run(
        ["btrfs", "-q", "subvolume", "delete", str(subvol(ctroot, vmid, 1, "s1"))], check=True
    )
    res = pct("rollback", vmid, "s1", check=False)
    assert res.rc != 0
    assert res.err == f"snapshot 's1' of volume '{volid(vmid, 1)}' does not exist\n"
    assert conf_text(vmid) == good
    assert (subvol(ctroot, vmid) / "root/file").read_text() == "now\n"


def test_a_volume_failing_mid_rollback_leaves_the_rollback_lock(
    pct: Pct, bt_ct: int, ctroot: Path
) -> None:
    vmid = bt_ct
    (subvol(ctroot, vmid) / "root/file").write_text("snap\n")
    pct("snapshot", vmid, "s1")
    (subvol(ctroot, vmid) / "root/file").write_text("now\n")
    with bind_mounted(subvol(ctroot, vmid, 1), ctroot / "mnt/busy"):
        res = pct("rollback", vmid, "s1", check=False)
    assert res.rc != 0 and f"volume '{volid(vmid, 1)}' is in use" in res.err
    assert (subvol(ctroot, vmid) / "root/file").read_text() == "snap\n"  # rootfs went first
    assert load(vmid).lock == "rollback"
    res = pct("start", vmid, check=False)
    assert res.rc != 0 and res.err == "CT is locked (rollback)\n"
    pct("unlock", vmid)
    pct("rollback", vmid, "s1")  # the retry completes it
    assert load(vmid).lock is None and load(vmid).parent == "s1"


# --- delete ---------------------------------------------------------------------------------


def test_case_31_delete_re_parents(pct: Pct, bt_ct: int, ctroot: Path) -> None:
    vmid = bt_ct
    for name in ("s1", "s2", "s3"):
        pct("snapshot", vmid, name)
    conf = load(vmid)
    assert conf.snapshots["s2"].values["parent"] == "s1"
    assert conf.snapshots["s3"].values["parent"] == "s2"
    assert conf.parent == "s3"

    pct("delsnapshot", vmid, "s2")  # intermediate
    conf = load(vmid)
    assert sorted(conf.snapshots) == ["s1", "s3"]
    assert conf.snapshots["s3"].values["parent"] == "s1"
    assert conf.parent == "s3" and conf.lock is None
    assert not subvol(ctroot, vmid, 0, "s2").exists()
    assert not subvol(ctroot, vmid, 1, "s2").exists()
    assert subvol(ctroot, vmid, 0, "s3").exists()
    assert not conf.unused()  # the volumes are still in use

    pct("delsnapshot", vmid, "s3")  # leaf: main's parent moves up
    assert load(vmid).parent == "s1"
    pct("delsnapshot", vmid, "s1")  # root: no parent left
    conf = load(vmid)
    assert conf.parent is None and conf.snapshots == {}
    assert sorted(p.name for p in subvol(ctroot, vmid).parent.iterdir()) == [
        f"subvol-{vmid}-disk-0.subvol",
        f"subvol-{vmid}-disk-1.subvol",
    ]
    res = pct("delsnapshot", vmid, "s1", check=False)
    assert res.rc != 0 and res.err == "snapshot 's1' does not exist\n"


def test_delete_failure_and_force(pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text) -> None:
    vmid = bt_ct
    pct("snapshot", vmid, "s1")
    add_to_main(ctroot, vmid, "lock: backup\n")
    res = pct("delsnapshot", vmid, "s1", "--force", check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    pct("unlock", vmid)

    with bind_mounted(subvol(ctroot, vmid, 1, "s1"), ctroot / "mnt/busy"):
        res = pct("delsnapshot", vmid, "s1", check=False)
        assert res.rc != 0 and "is in use" in res.err
        conf = load(vmid)
        assert conf.lock == "snapshot-delete"
        s1 = conf.snapshots["s1"]
        assert s1.values["snapstate"] == "delete"
        # rootfs went first: it left the section (as unused0), mp0 is what is left to do
        assert "rootfs" not in s1.values and s1.values["unused0"] == volid(vmid, 0)
        assert "mp0" in s1.values
        assert not subvol(ctroot, vmid, 0, "s1").exists()
        pct("unlock", vmid)
        res = pct("delsnapshot", vmid, "s1", "--force")
        assert "is in use" in res.text  # warned, not fatal
    conf = load(vmid)
    assert conf.snapshots == {} and conf.lock is None and "parent" not in conf.values
    assert "[s1]" not in conf_text(vmid)


def test_deleting_the_last_reference_of_a_volume_makes_it_unused(
    pct: Pct, bt_ct: int, ctroot: Path
) -> None:
    vmid = bt_ct
    pct("snapshot", vmid, "s1")
    # mp0 is edited out of the current config by hand: only s1 still references its volume
    conf_path = ctroot / f"etc/pve/lxc/{vmid}.conf"
    main, rest = conf_path.read_text().split("\n[s1]\n")
    conf_path.write_text(re.sub(r"^mp0: .*\n", "", main, flags=re.M) + "\n[s1]\n" + rest)
    pct("delsnapshot", vmid, "s1")
    conf = load(vmid)
    assert conf.unused() == {"unused0": volid(vmid, 1)}
    assert "mp0" not in conf.values


# --- listsnapshot ---------------------------------------------------------------------------


def tree_line(prefix: str, name: str, stamp: str, description: str) -> str:
    """One line of the tree as Proxmox prints it: ``printf "%s %-Ls %-23s %s\\n"``."""
    return f"{prefix} {name:<{30 - len(prefix)}} {stamp:<23} {description}\n"


def test_case_32_listsnapshot_tree(pct: Pct, bt_ct: int) -> None:
    vmid = bt_ct
    assert pct("listsnapshot", vmid).out == tree_line("`->", "current", "", "You are here!")
    pct("snapshot", vmid, "s1")
    pct("snapshot", vmid, "s2", "--description", "second\nmore lines")
    conf = load(vmid)

    def stamp(name: str) -> str:
        epoch = int(conf.snapshots[name].values["snaptime"])
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))

    assert pct("listsnapshot", vmid).out == (
        tree_line("`->", "s1", stamp("s1"), "no-description")
        + tree_line(" `->", "s2", stamp("s2"), "second")
        + tree_line("  `->", "current", "", "You are here!")
    )
    pct("rollback", vmid, "s1")  # current now hangs below s1, after s2
    out = pct("listsnapshot", vmid).out.splitlines()
    assert [line.split()[1] for line in out] == ["s1", "s2", "current"]
    assert out[2].startswith(" `-> current")

    data = json.loads(pct("listsnapshot", vmid, "--output-format", "json").out)
    assert [e["name"] for e in data] == ["s1", "s2", "current"]
    assert data[2]["parent"] == "s1" and data[2]["running"] == 0
    assert data[1]["parent"] == "s1" and data[1]["description"] == "second\nmore lines\n"


# --- a snapshot killed while the container is frozen ----------------------------------------


@contextlib.contextmanager
def fs_frozen(path: Path) -> Iterator[None]:
    """FIFREEZE the file system at ``path`` for the block: a btrfs snapshot taken on it waits
    (in the kernel) until it is thawed, which holds ``pct snapshot`` inside its freeze window
    for as long as the test needs."""
    subprocess.run(["fsfreeze", "-f", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["fsfreeze", "-u", str(path)], check=False, capture_output=True)


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert proc.poll() is None, f"pct ended ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


# the btrfs ioctls ctkit makes itself (x86-64's ioctl is system call 16):
# BTRFS_IOC_SNAP_CREATE_V2, BTRFS_IOC_SNAP_DESTROY, BTRFS_IOC_SUBVOL_CREATE
SNAP_CREATE = "0x50009417"
BTRFS_IOCTLS = (SNAP_CREATE, "0x5000940f", "0x5000940e")


def in_btrfs_ioctl(pid: int, requests: tuple[str, ...] = BTRFS_IOCTLS) -> bool:
    """``pid`` waits in one of the btrfs ioctls ``requests``: on a frozen file system, in the
    write it cannot do. Seen a moment earlier, it may not have got there yet (a signal then
    ended it at once, on a loaded machine)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 2 and fields[0] == "16" and fields[2] in requests


def test_a_snapshot_killed_while_frozen_is_recovered(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    """SIGKILLed inside its freeze window, ``pct snapshot`` left the CT frozen for good with
    ``lock: snapshot`` and a ``snapstate: prepare`` section. The next command thaws it, drops
    the half-made snapshot (section and volume snapshots) and the lock."""
    from shared.runtime.cgroups import CGroup

    vmid = bt_ct
    pct("start", vmid)
    cgroup = CGroup(vmid)
    proc = None
    try:
        with fs_frozen(ctroot / "mnt/bt"):
            proc = subprocess.Popen(
                [str(PCT), "snapshot", str(vmid), "s1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            pid = proc.pid
            wait_until(lambda: cgroup.is_frozen() and in_btrfs_ioctl(pid, (SNAP_CREATE,)), proc,
                       "btrfs snapshot while frozen")  # fmt: skip
            os.killpg(proc.pid, signal.SIGKILL)
        # the kill takes effect once the snapshot ioctl returns, after the thaw
        proc.wait(timeout=30)
        wait_group_gone(proc.pid)
        assert cgroup.is_frozen()
        text = conf_text(vmid)
        assert "lock: snapshot" in text and "snapstate: prepare" in text, text

        res = pct("status", vmid)
        assert res.out == "status: running\n"
        assert f"CT {vmid}: thawed the container snapshot had frozen" in res.err, res.err
        assert f"CT {vmid}: removed snapshot 's1'" in res.err
        assert f"CT {vmid}: removed lock 'snapshot'" in res.err
        assert not cgroup.is_frozen()
        conf = load(vmid)
        assert conf.lock is None and "s1" not in conf.snapshots
        assert not subvol(ctroot, vmid, 0, "s1").exists()
        assert not subvol(ctroot, vmid, 1, "s1").exists()
        assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
        assert pct("status", vmid).err == ""  # recovered once

        pct("snapshot", vmid, "s1")  # the name is free again
        assert load(vmid).snapshots["s1"].values.get("snapstate") is None
        assert pct("exec", vmid, "--", "true").rc == 0
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(OSError):
            cgroup.thaw()


# --- delsnapshot and rollback killed halfway ----------------------------------------------


def killed_while_btrfs_waits(ctroot: Path, argv: list[str], lock: str, conf_text: Text) -> None:
    """Run pct ``argv`` with the btrfs file system frozen (its btrfs ioctl waits in the kernel)
    and SIGKILL its whole group once the config carries ``lock``: the kill takes effect when
    the ioctl returns, after the thaw."""
    proc = None
    try:
        with fs_frozen(ctroot / "mnt/bt"):
            proc = subprocess.Popen(
                [str(PCT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )  # fmt: skip
            pgid = proc.pid

            def waiting() -> bool:
                return f"lock: {lock}\n" in conf_text(int(argv[1])) and in_btrfs_ioctl(pgid)

            wait_until(waiting, proc, f"btrfs under lock {lock}")
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_group_gone(proc.pid)
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_killed_delsnapshot_is_finished_by_the_next_command(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    """SIGKILLed while removing the storage snapshots, ``pct delsnapshot`` left ``lock:
    snapshot-delete`` and ``snapstate: delete`` for a human; the next command finishes the
    delete the user asked for."""
    vmid = bt_ct
    pct("snapshot", vmid, "s1")
    pct("snapshot", vmid, "s2")
    killed_while_btrfs_waits(ctroot, ["delsnapshot", str(vmid), "s1"], "snapshot-delete",
                             conf_text)  # fmt: skip
    assert "snapstate: delete" in conf_text(vmid)
    res = pct("status", vmid)
    assert f"CT {vmid}: delsnapshot" in res.err and "ended without cleaning up" in res.err
    assert f"CT {vmid}: removed snapshot 's1'" in res.err
    assert f"CT {vmid}: removed lock 'snapshot-delete'" in res.err
    conf = load(vmid)
    assert conf.lock is None and sorted(conf.snapshots) == ["s2"]
    assert "parent" not in conf.snapshots["s2"].values
    for disk in (0, 1):
        assert not subvol(ctroot, vmid, disk, "s1").exists()
        assert subvol(ctroot, vmid, disk, "s2").is_dir()
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    assert pct("status", vmid).err == ""


def interrupted_while_btrfs_waits(ctroot: Path, argv: list[str], lock: str, conf_text: Text) -> str:
    """Run pct ``argv`` with the btrfs file system frozen, SIGTERM it (alone) once the config
    carries ``lock`` and its btrfs ioctl waits, check that it goes on (with its step), then
    thaw; returns its stderr once it has exited 130."""
    with fs_frozen(ctroot / "mnt/bt"):
        proc = subprocess.Popen(
            [str(PCT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip

        def waiting() -> bool:
            locked = f"lock: {lock}\n" in conf_text(int(argv[1]))
            return locked and in_btrfs_ioctl(proc.pid)

        wait_until(waiting, proc, f"btrfs under lock {lock}")
        proc.terminate()
        time.sleep(0.3)
        assert proc.poll() is None  # the step goes on
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    return err


def test_a_delsnapshot_interrupted_while_removing_finishes_it_first(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    """SIGTERM while the storage snapshots are removed: the delete ends done (exit 130), not
    half done under ``lock: snapshot-delete`` with no owner left to finish it."""
    vmid = bt_ct
    pct("snapshot", vmid, "s1")
    pct("snapshot", vmid, "s2")
    err = interrupted_while_btrfs_waits(
        ctroot, ["delsnapshot", str(vmid), "s1"], "snapshot-delete", conf_text
    )
    assert err == "interrupted by signal\n"
    conf = load(vmid)
    assert conf.lock is None and sorted(conf.snapshots) == ["s2"]
    for disk in (0, 1):
        assert not subvol(ctroot, vmid, disk, "s1").exists()
        assert subvol(ctroot, vmid, disk, "s2").is_dir()
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()


def snapshot_then_change(pct: Pct, vmid: int, ctroot: Path) -> None:
    """Snapshot ``s1`` with both volumes' marker saying ``then`` and 512 MiB of memory; then
    the markers say ``now`` and the memory is 300."""
    for disk in (0, 1):
        (subvol(ctroot, vmid, disk) / "marker").write_text("then\n")
    pct("snapshot", vmid, "s1")
    pct("set", vmid, "--memory", "300")
    for disk in (0, 1):
        (subvol(ctroot, vmid, disk) / "marker").write_text("now\n")


def test_a_rollback_interrupted_while_rolling_back_finishes_it_first(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text
) -> None:
    """SIGTERM while the volumes are rolled back: the lock, the volumes and the config are one
    step, so the rollback ends done (exit 130), never locked halfway with no owner to finish
    it (its record went with the interrupted command)."""
    vmid = bt_ct
    snapshot_then_change(pct, vmid, ctroot)
    err = interrupted_while_btrfs_waits(
        ctroot, ["rollback", str(vmid), "s1"], "rollback", conf_text
    )
    assert err == "interrupted by signal\n"
    conf = load(vmid)
    assert conf.lock is None and conf.values.get("parent") == "s1"
    assert conf.values["memory"] == "512"
    for disk in (0, 1):
        assert (subvol(ctroot, vmid, disk) / "marker").read_text() == "then\n"
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()


@pytest.mark.parametrize("start", [False, True])
def test_a_killed_rollback_is_finished_by_the_next_command(
    pct: Pct, bt_ct: int, ctroot: Path, conf_text: Text, start: bool
) -> None:
    """SIGKILLed while rolling the volumes back, ``pct rollback`` left ``lock: rollback`` and
    volumes half rolled back; the next command rolls every volume back again, writes the
    snapshot's config, removes the copy the dead btrfs step left, and starts the container
    only if the rollback was asked to."""
    vmid = bt_ct
    snapshot_then_change(pct, vmid, ctroot)
    argv = ["rollback", str(vmid), "s1", *(["--start"] if start else [])]
    killed_while_btrfs_waits(ctroot, argv, "rollback", conf_text)
    res = pct("status", vmid)
    assert f"CT {vmid}: finished the rollback to snapshot 's1'" in res.err, res.err
    assert res.out == ("status: running\n" if start else "status: stopped\n")
    conf = load(vmid)
    assert conf.lock is None and conf.values.get("parent") == "s1"
    assert conf.values["memory"] == "512"
    for disk in (0, 1):
        assert (subvol(ctroot, vmid, disk) / "marker").read_text() == "then\n"
        assert subvol(ctroot, vmid, disk, "s1").is_dir()
    images = ctroot / f"mnt/bt/images/{vmid}"
    assert [p.name for p in images.iterdir() if ".tmp." in p.name] == []
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    if start:
        assert pct("exec", vmid, "--", "cat", "/marker").out == "then\n"


def rollback_stopping_the_ct(
    pct: Pct, vmid: int, ctroot: Path, tmp_path: Path
) -> tuple[subprocess.Popen[str], Path]:
    """``pct rollback`` of the running CT, started; the file that appears once the rollback
    has stopped the CT and waits for its post-stop hook (4 s) to end."""
    (subvol(ctroot, vmid) / "marker").write_text("then\n")
    pct("snapshot", vmid, "s1")
    (subvol(ctroot, vmid) / "marker").write_text("now\n")
    stopped = tmp_path / "stopped"
    hold_post_stop(pct, ctroot, vmid, stopped, 4)  # the rollback waits for the monitor
    pct("start", vmid)
    proc = subprocess.Popen(
        [str(PCT), "rollback", str(vmid), "s1"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    return proc, stopped


def assert_running_not_rolled_back(pct: Pct, vmid: int, ctroot: Path) -> None:
    assert pct("status", vmid).out == "status: running\n"
    assert load(vmid).lock is None
    assert pct("exec", vmid, "--", "cat", "/marker").out == "now\n"
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_rollback_interrupted_while_stopping_the_ct_starts_it_again_itself(
    pct: Pct, bt_ct: int, ctroot: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """Interrupted after it stopped the running container and before its lock, the rollback
    had not begun: it starts the container again itself before it exits (it left it stopped,
    and its record went with it: no later command knew)."""
    vmid = bt_ct
    proc, stopped = rollback_stopping_the_ct(pct, vmid, ctroot, tmp_path)
    wait_while_running(proc, stopped.exists, "the post-stop hook")
    os.killpg(proc.pid, sig)  # (the whole group, as a terminal's Ctrl-C)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "interrupted by signal\n"
    assert f"CT {vmid}: restarted the container rollback had stopped" in out
    assert_running_not_rolled_back(pct, vmid, ctroot)


def test_a_rollback_killed_while_stopping_the_ct_starts_it_again(
    pct: Pct, bt_ct: int, ctroot: Path, tmp_path: Path
) -> None:
    """Killed after it stopped the running container and before its lock, the rollback had
    not begun: the next command starts the container again, rolled back nowhere."""
    from shared.runtime import lxcapi

    vmid = bt_ct
    proc, stopped = rollback_stopping_the_ct(pct, vmid, ctroot, tmp_path)
    sigkill_group_when(proc, stopped.exists, "the post-stop hook")
    deadline = time.monotonic() + 30
    while lxcapi.monitor_alive(vmid):  # the hook still holds the stopped container
        assert time.monotonic() < deadline, "the post-stop hook did not end"
        time.sleep(0.1)
    res = pct("status", vmid)
    assert f"CT {vmid}: restarted the container rollback had stopped" in res.err, res.err
    assert_running_not_rolled_back(pct, vmid, ctroot)


def test_a_start_during_a_rollbacks_stop_waits_for_the_rollback(
    pct: Pct, bt_ct: int, ctroot: Path, tmp_path: Path
) -> None:
    """The rollback stops the running container and locks it under one hold of the config
    lock, as Proxmox's: a ``pct start`` made meanwhile waits, and finds the rollback's lock
    (or, later, the rolled-back container). It used to get in between: the rollback failed
    after a long wait, and the container ran what the snapshot was to replace."""
    vmid = bt_ct
    proc, stopped = rollback_stopping_the_ct(pct, vmid, ctroot, tmp_path)
    wait_while_running(proc, stopped.exists, "the post-stop hook")
    began = time.monotonic()
    started = pct("start", vmid, check=False)  # the hook holds the stopped CT for 4 s more
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert time.monotonic() - began < 20
    assert started.rc == 0 or started.err == "CT is locked (rollback)\n", started.text
    assert load(vmid).lock is None and load(vmid).parent == "s1"
    pct("start", vmid, check=False)  # (refused above: started now)
    assert pct("status", vmid).out == "status: running\n"
    assert pct("exec", vmid, "--", "cat", "/marker").out == "then\n"


def test_a_killed_delsnapshot_keeps_a_volume_only_the_snapshot_named(
    pct: Pct, bt_ct: int, ctroot: Path, tmp_path: Path
) -> None:
    """A mount point deleted after the snapshot leaves its volume named by the snapshot only.
    The delete moves each done mount point to the section's ``unusedN``; killed after that one
    and before its end, its recovery (which only looked at the section's mount points) removed
    the section and with it the volume's last name: it stayed on the storage, named by
    nothing. It becomes ``unusedN`` of the container, as a delete that is not killed does."""

    vmid = bt_ct
    pct("set", vmid, "--mp1", "bt:0,mp=/more")
    pct("snapshot", vmid, "s1")
    pct("set", vmid, "--delete", "mp0")
    assert volid(vmid, 1) not in load(vmid).values.values()  # named by s1 only
    held, marker = holding_call(tmp_path, "delete_subvolume", "*disk-2.subvol@s1")
    proc = subprocess.Popen(
        [*held, "delsnapshot", str(vmid), "s1"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the delete of mp1's snapshot")
    res = pct("status", vmid)
    assert f"CT {vmid}: removed snapshot 's1'" in res.err, res.err
    conf = load(vmid)
    assert conf.lock is None and "s1" not in conf.snapshots
    assert subvol(ctroot, vmid, 1).is_dir()
    assert volid(vmid, 1) in conf.unused().values(), conf.values
    for disk in (0, 1, 2):
        assert not subvol(ctroot, vmid, disk, "s1").exists()


PAUSED_CREATE = """
import sys
from shared import signals
from shared.ctconfig import store
from shared.runtime import snapshot
from shared.storage import volumes
from tests.midway import hold

vmid, where = int(sys.argv[1]), sys.argv[2]

def pause(real):
    def paused(*args, **kwargs):
        result = real(*args, **kwargs)
        print(where, flush=True)
        hold()
        return result
    return paused

if where == "prepared":
    store.save = pause(store.save)
else:
    volumes.snapshot_create = pause(volumes.snapshot_create)
with signals.interruptible():
    try:
        snapshot.create(vmid, "s1")
        print("created", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.parametrize("where", ["prepared", "snapshotted"])
def test_a_snapshot_interrupted_right_after_a_step_undoes_that_step(
    bt_ct: int, ctroot: Path, conf_text: Text, where: str
) -> None:
    """Ctrl-C just after the config was marked (``lock: snapshot``, the prepare section) or
    just after a volume's snapshot was taken: that step was outside the undo (the mark stayed
    for the next command; the volume's snapshot stayed for good). Each step and its record in
    the undo now go together, and the signal acts after it."""
    from tests.midway import signal_midway, stopped_midway

    proc, line = stopped_midway(PAUSED_CREATE, str(bt_ct), where)
    try:
        assert line == where
        signal_midway(proc, signal.SIGINT)
        out, _err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert out.splitlines()[-1] == "interrupted", out
    text = conf_text(bt_ct)
    assert "lock:" not in text and "[s1]" not in text, text
    images = ctroot / f"mnt/bt/images/{bt_ct}"
    assert not [p.name for p in images.iterdir() if p.name.endswith("@s1")]
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{bt_ct}.json").exists()
