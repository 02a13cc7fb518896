"""destroy, mount and unmount of real containers (spec pct.md §1, §6, §9 cases 26, 27, 42)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import paths
from tests.pct.conftest import (
    PCT,
    Containers,
    Pct,
    hold_post_stop,
    leftovers,
    stop_by_itself,
    wait_while_running,
)

pytestmark = pytest.mark.lxc

Text = Callable[[int], str]
Images = Callable[[int], Path]


def test_case_26_destroy_running_ct_frees_every_owned_volume(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    images: Images,
    ctroot: Path,
    tmp_path: Path,
) -> None:
    vmid, other = new_vmid(), new_vmid()
    pct("create", other, busybox_template, "--rootfs", "local:0")
    bind_src = tmp_path / "bind-src"
    bind_src.mkdir()
    (bind_src / "data.txt").write_text("precious\n")
    pct(
        "create", vmid, busybox_template, "--rootfs", "local:1", "--mp0", "local:1,mp=/data",
        "--mp1", f"{bind_src},mp=/srv",
    )  # fmt: skip
    pct("set", vmid, "--mp2", "local:0,mp=/extra")
    pct("set", vmid, "--delete", "mp2")  # -> unused0
    foreign = f"local:{other}/subvol-{other}-disk-0.subvol"
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write(f"unused1: {foreign}\n")
    pct("start", vmid)
    pct("set", vmid, "--mp3", "local:0,mp=/later")  # a new mount point: hot-plugged, allocated
    main_section = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text().split("\n[", 1)[0]
    assert f"mp3: local:{vmid}/subvol-{vmid}-disk-" in main_section
    res = pct("destroy", vmid, check=False)
    assert res.rc != 0 and res.err == f"unable to destroy CT {vmid} - container is running\n"
    res = pct("destroy", vmid, "--force")
    assert f"forced to stop CT {vmid} before destroying!" in res.out
    assert f"ignore deletion of '{foreign}', CT {vmid} isn't the owner!" in res.out
    assert not paths.ct_conf(vmid).exists()
    assert not images(vmid).exists()  # rootfs, mp0, mp3 and unused0 are gone
    assert not paths.lxc_dir(vmid).exists()
    assert (images(other) / f"subvol-{other}-disk-0.subvol").is_dir()
    assert (bind_src / "data.txt").read_text() == "precious\n"
    assert leftovers(ctroot) == []


def test_case_27_unreferenced_disks(
    pct: Pct, vmid: int, busybox_template: Path, images: Images
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    stray = images(vmid) / f"vm-{vmid}-disk-7.raw"
    stray.write_bytes(b"\0" * 4096)
    pct("destroy", vmid)
    assert stray.exists()  # not referenced, not named in the config: kept without the flag
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("destroy", vmid, "--destroy-unreferenced-disks", "1")
    assert not stray.exists()


def test_unreferenced_disks_skip_storages_without_images(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, restic_store: object
) -> None:
    """A restic storage (backups only) was asked for the CT's images too: destroy failed with
    'does not support images' and left the config locked 'destroyed'."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    stray = images(vmid) / f"vm-{vmid}-disk-7.raw"
    stray.write_bytes(b"\0" * 4096)
    pct("destroy", vmid, "--destroy-unreferenced-disks", "1")
    assert not stray.exists()
    assert not paths.ct_conf(vmid).exists()


def test_a_locked_ct_refuses_destroy_resize_df_fstrim(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    with open(ctroot / f"etc/pve/lxc/{vmid}.conf", "a") as fh:
        fh.write("lock: backup\n")
    for args in (("destroy",), ("resize", "rootfs", "+1G"), ("df",), ("fstrim",), ("mount",)):
        res = pct(args[0], vmid, *args[1:], check=False)
        assert res.rc == 5 and res.err == "CT is locked (backup)\n", args
    assert "lock: backup\n" in paths.ct_conf(vmid).read_text()
    assert leftovers(ctroot) == []


def test_case_42_mount_and_unmount(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Text, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:1", "--mp0", "local:1,mp=/data")
    rootfs = paths.lxc_rootfs(vmid)
    res = pct("mount", vmid)
    assert res.out == f"mounted CT {vmid} in '{rootfs}'\n"
    assert "lock: mounted\n" in conf_text(vmid)
    assert (rootfs / "etc/passwd").is_file()
    (rootfs / "data/file.txt").write_text("on mp0\n")
    res = pct("set", vmid, "--memory", "256", check=False)
    assert res.rc != 0 and res.err == "CT is locked (mounted)\n"
    res = pct("mount", vmid, check=False)
    assert res.rc != 0 and res.err == "CT is locked (mounted)\n"
    pct("unmount", vmid)
    assert "lock:" not in conf_text(vmid)
    assert leftovers(ctroot) == []
    assert not (rootfs / "etc").exists()
    pct("start", vmid)
    assert pct("exec", vmid, "--", "cat", "/data/file.txt").out == "on mp0\n"
    res = pct("mount", vmid, check=False)
    assert res.rc != 0 and res.err == f"CT {vmid} is running\n"


def test_a_volume_a_running_ct_mounts_is_never_freed(cts: Containers) -> None:
    """A running container's mount points live in its own mount namespace only: a directory
    volume of another container, given to it as mp0, was deleted under it (its data gone)."""
    owner = cts.create("--rootfs", "local:0", "--mp0", "local:0,mp=/data")
    volume = next(
        line.split(" ", 1)[1].split(",")[0]
        for line in cts.conf(owner).splitlines()
        if line.startswith("mp0:")
    )
    user = cts.create("--rootfs", "local:0")
    # attached, not given to create: a create fills the volumes it is given (another
    # container's too, which it refuses)
    cts.pct("set", user, "--mp0", f"{volume},mp=/shared")
    cts.pct("start", user)
    try:
        cts.pct("exec", user, "--", "sh", "-c", "echo kept > /shared/file")
        cts.pct("set", owner, "--delete", "mp0")  # now unused0 of its owner
        res = cts.pct("set", owner, "--delete", "unused0", check=False)
        assert f"volume '{volume}' is in use (/proc/" in res.text, res.text
        assert f"unused0: {volume}" in cts.conf(owner)  # still referenced: not freed
        # destroy fails on the volume it cannot free, as Proxmox's does, and keeps the config
        # (locked) that still names it
        res = cts.pct("destroy", owner, check=False)
        assert res.rc != 0
        assert f"unable to free volume '{volume}' - volume '{volume}' is in use" in res.err
        assert f"unused0: {volume}" in cts.conf(owner) and "lock: destroyed" in cts.conf(owner)
        out = cts.pct("exec", user, "--", "cat", "/shared/file").out
        assert out == "kept\n"
    finally:
        cts.pct("stop", user)
    cts.pct("destroy", user)  # not the owner: the volume stays
    cts.pct("unlock", owner)
    cts.pct("destroy", owner)
    assert not cts.conf_path(owner).exists()
    assert not (cts.root / f"var/lib/vz/images/{owner}").exists()


def test_a_volume_that_cannot_be_freed_fails_destroy_and_keeps_the_config(
    cts: Containers,
) -> None:
    vmid = cts.create("--rootfs", "local:0.1", "--mp0", "local:0.1,mp=/data")
    # mp0's image attached to a loop device: rootfs is freed first, then destroy stops there
    image = cts.root / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-1.raw"
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        res = cts.pct("destroy", vmid, check=False)
        assert res.rc != 0
        assert f"unable to free volume 'local:{vmid}/vm-{vmid}-disk-1.raw' - " in res.err
        conf = cts.conf(vmid)
        assert "lock: destroyed" in conf and f"vm-{vmid}-disk-1.raw" in conf, conf
        assert image.exists() and not image.with_name(f"vm-{vmid}-disk-0.raw").exists()
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
    cts.pct("destroy", vmid)  # the rest, over its own lock; what the first one freed is no error
    assert not cts.conf_path(vmid).exists()
    assert not image.parent.exists()


def test_destroy_unmounts_a_leftover_staging_mount_first(
    pct: Pct, vmid: int, busybox_template: Path, images: Images, ctroot: Path
) -> None:
    """A staging mount left on the host (by a create or restore killed before they ran in a
    mount namespace of their own) kept the volume busy: destroy failed for good with
    'unable to free volume ... is in use'."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    image = images(vmid) / f"vm-{vmid}-disk-0.raw"
    staging = paths.lxc_rootfs(vmid)
    staging.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(staging)], check=True)
    pct("destroy", vmid)
    assert not image.exists()
    assert leftovers(ctroot) == []


def test_destroy_frees_a_volume_only_a_snapshot_still_names(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str, ctroot: Path
) -> None:
    """A mount point deleted after a snapshot is named by that snapshot alone: destroy left
    it (and its snapshot) on the storage, named by nothing."""
    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:1",
        "--mp1", f"{btrfs_storage}:0.1,mp=/m1")  # fmt: skip
    pct("snapshot", vmid, "s1")
    pct("set", vmid, "--delete", "mp1")
    pct("destroy", vmid)
    images = ctroot / f"mnt/bt/images/{vmid}"
    assert not images.exists() or sorted(p.name for p in images.iterdir()) == []


@pytest.mark.parametrize("how", ["killed", "interrupted"])
def test_a_killed_or_interrupted_destroy_is_finished_by_the_next_command(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str, ctroot: Path, how: str
) -> None:
    """SIGKILLed (or sent SIGTERM) while freeing the volumes, ``pct destroy`` left ``lock:
    destroyed`` on a container with half its volumes gone, for a human to unlock and destroy
    again; the next command finishes the destroy the user asked for."""
    from tests.pct import test_snapshot as snaps

    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:1",
        "--mp0", f"{btrfs_storage}:0,mp=/data")  # fmt: skip
    conf_text = paths.ct_conf(vmid).read_text
    argv = ["destroy", str(vmid)]
    if how == "killed":
        snaps.killed_while_btrfs_waits(ctroot, argv, "destroyed", lambda _vmid: conf_text())
    else:
        snaps.interrupted_while_btrfs_waits(ctroot, argv, "destroyed", lambda _vmid: conf_text())
    assert "lock: destroyed" in conf_text()
    res = pct("list")
    assert f"CT {vmid}: destroy (pid " in res.err and "ended without cleaning up" in res.err
    assert f"CT {vmid}: finished the destroy pct destroy had begun" in res.err, res.err
    assert f"{vmid}" not in res.out
    assert not paths.ct_conf(vmid).exists()
    for disk in (0, 1):
        assert not snaps.subvol(ctroot, vmid, disk).exists()
    assert not (ctroot / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()


def test_a_ct_that_stopped_by_itself_is_destroyed_at_once(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    """LXC reports STOPPED before the kernel lets go of the raw volume's loop device: a destroy
    right then found the volume in use and left the CT locked 'destroyed'."""
    pct("create", vmid, busybox_template, "--rootfs", "local:1")
    stop_by_itself(pct, vmid)
    res = pct("destroy", vmid, check=False)
    assert res.rc == 0, res.text
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    assert leftovers(ctroot) == []


def test_a_start_during_a_forced_destroy_finds_it_gone(
    pct: Pct, vmid: int, busybox_template: Path, ctroot: Path, tmp_path: Path
) -> None:
    """``destroy --force`` stops the running container and frees its volumes under one hold
    of the config lock, as Proxmox's: a ``pct start`` made meanwhile waits and finds no
    container. It used to get in between: the destroy failed, or the start."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    stopped = tmp_path / "stopped"
    hold_post_stop(pct, ctroot, vmid, stopped, 3)  # the destroy waits for the monitor
    pct("start", vmid)
    destroy = subprocess.Popen(
        [str(PCT), "destroy", str(vmid), "--force"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_while_running(destroy, stopped.exists, "the post-stop hook")
    started = pct("start", vmid, check=False)
    out, err = destroy.communicate(timeout=60)
    assert destroy.returncode == 0, out + err
    assert started.rc != 0 and "does not exist" in started.err, started.text
    assert not paths.ct_conf(vmid).exists() and not paths.lxc_dir(vmid).exists()
    assert leftovers(ctroot) == []
