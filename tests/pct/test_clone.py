"""pct clone: full clones between dir and btrfs keep content and attributes, linked clones of
templates on btrfs share their extents and start, refusals leave nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared.runtime import lxcapi
from tests.pct.conftest import (
    PCT,
    Containers,
    holding_call,
    interrupt_mid_copy,
    kill_alone,
    kill_mid_copy,
    live_in_group,
    sigkill_group_when,
    tree_signature,
)

pytestmark = pytest.mark.lxc


def decorate(root: Path) -> None:
    """Files that a careless copy gets wrong: xattrs, hard links, holes, modes, odd owners."""
    data = root / "srv"
    data.mkdir(exist_ok=True)
    (data / "a").write_text("hello\n")
    os.link(data / "a", data / "a-link")
    os.setxattr(data / "a", "user.note", b"kept")
    with open(data / "sparse", "wb") as fh:
        fh.seek(8 << 20)
        fh.write(b"end")
    os.chmod(data / "sparse", 0o4751)
    os.chown(data / "sparse", 101234, 101235)
    os.symlink("a", data / "sym")


def test_full_clone_dir_to_btrfs_and_back_is_identical(cts: Containers, btrfs_storage: str) -> None:
    src = cts.create("--rootfs", "local:1", "--net0", "name=eth0,bridge=none0")
    mid, back = cts.new_vmid(), cts.new_vmid()
    with cts.mounted(src) as root:
        decorate(root)
        original = tree_signature(root)
    res = cts.pct("clone", src, mid, "--full", "--storage", btrfs_storage, "--hostname", "mid")
    assert f"create full clone of mountpoint rootfs (local:{src}/vm-{src}-disk-0.raw)" in res.out
    text = cts.conf(mid)
    assert re.search(rf"rootfs: {btrfs_storage}:{mid}/subvol-{mid}-disk-0.subvol,size=1G", text)
    assert "hostname: mid\n" in text and "lock:" not in text
    mac = lambda t: re.search(r"hwaddr=([0-9A-F:]+)", t).group(1)  # noqa: E731
    assert mac(text) != mac(cts.conf(src))
    cts.pct("clone", mid, back, "--full", "--storage", "local")
    for vmid in (mid, back):
        with cts.mounted(vmid) as root:
            assert tree_signature(root) == original
    assert (cts.root / f"var/lib/vz/images/{back}").is_dir()
    assert "lock:" not in cts.conf(src)


@pytest.mark.parametrize("rootfs", ["local:0", "local:1"])  # a directory, a raw ext4 image
def test_a_large_full_clone_is_copied_by_several_processes_and_starts(
    cts: Containers, rootfs: str
) -> None:
    src, newid = cts.create("--rootfs", rootfs), cts.new_vmid()
    with cts.mounted(src) as root:
        decorate(root)
        os.link(root / "srv/a", root / "etc/a-link")  # a hard link between two units
        big = root / "srv/big"
        big.mkdir()
        for i in range(66):  # 264 MiB allocated: over the bound for a split copy
            with open(big / f"f{i}", "wb") as fh:
                fh.write(os.urandom(4096))
                os.posix_fallocate(fh.fileno(), 0, 4 << 20)
        os.utime(big, ns=(1_600_000_000_000_000_000, 1_500_000_000_000_000_000))
        original = tree_signature(root)
        mtimes = {rel: (root / rel).lstat().st_mtime_ns for rel in ("srv", "srv/big")}
    res = cts.pct("clone", src, newid, "--full", "--hostname", "big")
    workers = min(4, os.cpu_count() or 1)
    by = f" by {workers} processes" if workers > 1 else ""  # one CPU: one cp, as before
    assert re.search(rf"copied 2[0-9]{{2}}MiB in [^\n]*/s\){by}\n", res.out), res.out
    with cts.mounted(newid) as root:
        assert tree_signature(root) == original
        assert (root / "etc/a-link").stat().st_ino == (root / "srv/a").stat().st_ino
        # directories split between the processes get their times after their content
        assert {rel: (root / rel).lstat().st_mtime_ns for rel in mtimes} == mtimes
    cts.pct("start", newid)
    assert cts.pct("exec", newid, "--", "cat", "/etc/a-link").out == "hello\n"
    assert cts.pct("exec", newid, "--", "hostname").out.strip() == "big"
    cts.pct("stop", newid)


def test_linked_clone_of_a_template_shares_extents_and_starts(
    cts: Containers, btrfs_storage: str
) -> None:
    base, linked = cts.create("--rootfs", f"{btrfs_storage}:0"), cts.new_vmid()
    with cts.mounted(base) as root:
        (root / "big").write_bytes(os.urandom(4 << 20))
    err = cts.refused("clone", base, linked, "--full", "0")
    assert "Linked clone feature for " in err and "is not available" in err
    assert not cts.conf_path(linked).exists()
    cts.pct("template", base)
    err = cts.refused("clone", base, linked, "--storage", btrfs_storage)
    assert "parameter 'storage' not allowed for linked clones" in err
    cts.pct("clone", base, linked, "--hostname", "linked")
    text = cts.conf(linked)
    volname = f"{base}/subvol-{base}-disk-0.subvol/{linked}/subvol-{linked}-disk-0.subvol"
    assert f"rootfs: {btrfs_storage}:{volname}" in text
    assert "template" not in text
    subvol = cts.root / f"mnt/bt/images/{linked}/subvol-{linked}-disk-0.subvol"
    out = subprocess.run(
        ["btrfs", "filesystem", "du", "-s", "--raw", str(subvol)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1].split()  # fmt: skip
    total, exclusive, shared = int(out[0]), int(out[1]), int(out[2])
    assert total > 4 << 20 and shared >= 4 << 20 and exclusive < total // 10
    cts.pct("start", linked)
    assert cts.pct("exec", linked, "--", "hostname").out.strip() == "linked"
    cts.pct("stop", linked)
    # the template is the clone's base: destroyed, it left the clone naming a base that is gone
    err = cts.refused("destroy", base)
    assert (
        err
        == f"base volume '{base}/subvol-{base}-disk-0.subvol' is still in use by linked clones\n"
    )
    assert "template: 1" in cts.conf(base) and "lock:" not in cts.conf(base)
    cts.pct("destroy", linked)
    cts.pct("destroy", base)  # its last clone gone
    assert not cts.conf_path(base).exists()


def test_a_template_that_is_a_linked_clone_keeps_its_own_clones_base(
    cts: Containers, btrfs_storage: str
) -> None:
    """A linked clone made a template names its volume in the long form, its own clones name
    it in the short one: compared as text, it was destroyed under them (and a new template of
    its id then could not be destroyed); a restore --force over a template freed its clones'
    bases without any check."""
    first = cts.create("--rootfs", f"{btrfs_storage}:0")
    cts.pct("template", first)
    middle, last = cts.new_vmid(), cts.new_vmid()
    cts.pct("clone", first, middle)
    cts.pct("template", middle)
    cts.pct("clone", middle, last)
    message = (
        f"base volume '{middle}/subvol-{middle}-disk-0.subvol' is still in use by linked clones"
    )
    assert cts.refused("destroy", middle) == message + "\n"
    dump = cts.root / "dump"
    dump.mkdir()
    subprocess.run([str(PCT.parent / "vzdump"), str(middle), "--dumpdir", str(dump)], check=True,
                   capture_output=True)  # fmt: skip
    archive = next(dump.glob("*.tar*"))
    before = cts.conf(middle)
    err = cts.refused("restore", middle, archive, "--force", "--storage", btrfs_storage)
    assert err == f"unable to restore CT {middle} - {message}\n"
    assert cts.conf(middle) == before
    cts.pct("start", last)
    cts.pct("stop", last)
    for vmid in (last, middle, first):
        cts.pct("destroy", vmid)


def test_a_linked_clone_killed_after_its_snapshot_is_undone_by_the_next_command(
    cts: Containers, btrfs_storage: str, tmp_path: Path
) -> None:
    """The clone's subvolume was made before its name was on record: a SIGKILL right after the
    btrfs snapshot left it on the storage, named by nothing, for good."""
    base, linked = cts.create("--rootfs", f"{btrfs_storage}:0"), cts.new_vmid()
    cts.pct("template", base)
    cts.pct.vmids.add(linked)
    held, marker = holding_call(tmp_path, "snapshot_subvolume", "*", after=True)
    argv = [*held, "clone", str(base), str(linked)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the linked clone's snapshot")
    images = cts.root / f"mnt/bt/images/{linked}"
    assert [p.name for p in images.iterdir()] == [f"subvol-{linked}-disk-0.subvol"]
    res = cts.pct("list")
    volid = (
        f"{btrfs_storage}:{base}/subvol-{base}-disk-0.subvol/{linked}/subvol-{linked}-disk-0.subvol"
    )
    assert f"CT {linked}: freed volume '{volid}' the unfinished pct clone allocated" in res.text
    assert not cts.conf_path(linked).exists()
    assert not images.exists() or list(images.iterdir()) == []
    assert "lock:" not in cts.conf(base)


def test_clone_refusals(cts: Containers) -> None:
    src, other = cts.create("--rootfs", "local:0"), cts.create("--rootfs", "local:0")
    assert f"CT {other} already exists on node" in cts.refused("clone", src, other)
    newid = cts.new_vmid()
    err = cts.refused("clone", src, newid, "--target", "elsewhere")
    assert "no such cluster node 'elsewhere'" in err
    # a bad hostname is a bad parameter, as pct set says it (it was a traceback, exit 1)
    res = cts.pct("clone", src, newid, "--hostname", "a_b", check=False)
    assert (
        res.rc == 2
        and "hostname: invalid format - value does not look like a valid DNS name" in res.err
    )
    assert "Traceback" not in res.err and "lock:" not in cts.conf(src)
    cts.pct("start", src)
    err = cts.refused("clone", src, newid)
    assert "Full clone of a running container is only possible from a snapshot" in err
    cts.pct("stop", src)
    with open(cts.conf_path(src), "a") as fh:
        fh.write("mp0: /tmp,mp=/mnt/host\n")
    err = cts.refused("clone", src, newid)
    assert "unable to clone mountpoint 'mp0' (type bind)" in err
    assert not cts.conf_path(newid).exists()
    assert "lock:" not in cts.conf(src)


def test_failed_clone_leaves_no_config_and_no_volume(cts: Containers, tiny_storage: str) -> None:
    src, newid = cts.create("--rootfs", "local:0"), cts.new_vmid()
    assert cts.refused("clone", src, newid, "--storage", tiny_storage).startswith("clone failed: ")
    assert not cts.conf_path(newid).exists()
    assert list((cts.root / "mnt/tiny").rglob("*disk*")) == []
    assert "lock:" not in cts.conf(src)


def test_a_raw_volume_its_storage_cannot_hold_fails_the_clone(
    cts: Containers, small_storage: str
) -> None:
    src, newid = cts.create("--rootfs", "local:0.3"), cts.new_vmid()
    err = cts.refused("clone", src, newid, "--full", "--storage", small_storage)
    assert err.startswith("clone failed: unable to write volume"), err
    assert not cts.conf_path(newid).exists()
    assert list((cts.root / "mnt/small").rglob("*disk*")) == []
    assert "lock:" not in cts.conf(src)


def test_a_clone_killed_half_way_leaves_nothing(cts: Containers) -> None:
    src, newid = cts.create("--rootfs", "local:0"), cts.new_vmid()
    with cts.mounted(src) as root:
        (root / "big").write_bytes(os.urandom(16 << 20))
    proc = subprocess.Popen(
        [str(PCT), "clone", str(src), str(newid), "--bwlimit", "1024"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cts.pct.vmids.add(newid)
    images = cts.root / f"var/lib/vz/images/{newid}"
    deadline = time.monotonic() + 30
    while not list(images.glob("*")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1)  # rsync is copying now
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted by signal")
    assert not cts.conf_path(newid).exists()
    assert list(images.glob("*")) == []
    assert "lock:" not in cts.conf(src)


def test_full_clone_of_a_running_container_from_a_snapshot(
    cts: Containers, btrfs_storage: str
) -> None:
    src = cts.create("--rootfs", f"{btrfs_storage}:0", "--memory", "256")
    newid = cts.new_vmid()
    with cts.mounted(src) as root:
        (root / "marker").write_text("before\n")
        os.chown(root / "marker", 100000, 100000)  # the CT's root may rewrite it
    cts.pct("snapshot", src, "s1")
    cts.pct("set", src, "--memory", "300")
    cts.pct("start", src)
    cts.pct("exec", src, "--", "sh", "-c", "echo after > /marker")
    cts.pct("clone", src, newid, "--full", "--snapname", "s1", "--storage", "local")
    assert lxcapi.is_running(src)
    text = cts.conf(newid)
    assert "memory: 256\n" in text  # the snapshot's values, not the current ones
    assert "parent" not in text and "snaptime" not in text and "[s1]" not in text
    assert f"rootfs: local:{newid}/subvol-{newid}-disk-0.subvol" in text
    marker = cts.root / f"var/lib/vz/images/{newid}/subvol-{newid}-disk-0.subvol/marker"
    assert marker.read_text() == "before\n"
    cts.pct("stop", src)


@pytest.mark.parametrize("how", ["TERM", "INT"])
def test_an_interrupted_full_clone_of_a_raw_volume_frees_the_new_image(
    cts: Containers, how: str
) -> None:
    # the new image's autoclear loop device goes away a moment after the unmount: freeing it
    # at once found it "in use" and left it on disk
    src, newid = cts.create("--rootfs", "local:1"), cts.new_vmid()
    with cts.mounted(src) as root:
        (root / "big").write_bytes(os.urandom(48 << 20))
        before = tree_signature(root)
    cts.pct.vmids.add(newid)
    images = cts.root / f"var/lib/vz/images/{newid}"
    argv = ["clone", str(src), str(newid), "--full", "--bwlimit", "8000"]
    interrupt_mid_copy(argv, images, how)
    assert not cts.conf_path(newid).exists()
    assert list(images.glob("*")) == []
    assert "lock:" not in cts.conf(src)
    with cts.mounted(src) as root:
        assert tree_signature(root) == before


@pytest.mark.parametrize("then", ["list", "clone"])
def test_a_full_clone_killed_mid_copy_is_undone_by_the_next_command(
    cts: Containers, then: str
) -> None:
    """SIGKILL runs no cleanup: the new config stayed locked 'create', the volume being copied
    was named by no config (destroying the new CT left it on disk), and the source kept its
    'disk' lock for a human. Both ids are on record: the next command that meets either undoes
    the clone as its failure would have, and the source is unlocked, untouched."""
    src, newid = cts.create("--rootfs", "local:1"), cts.new_vmid()
    with cts.mounted(src) as root:
        (root / "big").write_bytes(os.urandom(48 << 20))
        before = tree_signature(root)
    cts.pct.vmids.add(newid)
    images = cts.root / f"var/lib/vz/images/{newid}"
    kill_mid_copy(["clone", str(src), str(newid), "--full", "--bwlimit", "8000"], images)
    (partial,) = images.glob("vm-*")
    text = cts.conf(newid)
    assert "lock: create" in text and f"unused0: local:{newid}/{partial.name}\n" in text
    assert "rootfs" not in text  # an incomplete copy is no mount point
    assert "lock: disk" in cts.conf(src)
    if then == "list":
        res = cts.pct("list")  # meets both ids
    else:  # the same clone again: it recovers both ids first, then goes ahead
        res = cts.pct("clone", src, newid, "--full")
    assert f"CT {src}: removed lock 'disk'" in res.text, res.text
    assert (
        f"CT {newid}: freed volume 'local:{newid}/{partial.name}' the unfinished pct clone "
        "allocated" in res.text
    )
    assert f"CT {newid}: removed the config of the unfinished pct clone" in res.text
    assert "lock:" not in cts.conf(src)
    if then == "list":
        assert not cts.conf_path(newid).exists()
        assert list(images.glob("*")) == []
    else:
        assert "lock:" not in cts.conf(newid)
        assert [p.name for p in images.glob("*")] == [partial.name]  # the name, free again
        with cts.mounted(newid) as root:
            assert tree_signature(root) == before
    with cts.mounted(src) as root:
        assert tree_signature(root) == before


def test_a_split_copy_killed_takes_its_cp_processes_along(cts: Containers) -> None:
    """A large tree is copied by several cp at once. A SIGKILL of pct while they run ends every
    one of them (none goes on writing into the volume the next command frees; they are
    stopped first, so none can end by finishing its copy), and the next command undoes the
    clone as it undoes a killed single copy."""
    src, newid = cts.create("--rootfs", "local:1"), cts.new_vmid()
    with cts.mounted(src) as root:
        big = root / "srv/big"
        big.mkdir(parents=True)
        for i in range(66):  # 264 MiB written: over the bound for a split copy, and slow enough
            (big / f"f{i}").write_bytes(os.urandom(4 << 20))
        before = tree_signature(root)
    cts.pct.vmids.add(newid)
    images = cts.root / f"var/lib/vz/images/{newid}"
    workers = min(4, os.cpu_count() or 1)
    proc = subprocess.Popen(
        [str(PCT), "clone", str(src), str(newid), "--full"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(cps := [p for p in live_in_group(proc.pid) if p.endswith(" cp")]) < workers:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        for cp in cps:  # held where they are: only pct's death can end them now
            os.kill(int(cp.split()[0]), signal.SIGSTOP)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    kill_alone(proc)
    (partial,) = images.glob("vm-*")
    assert "lock: create" in cts.conf(newid)
    res = cts.pct("list")
    assert f"CT {src}: removed lock 'disk'" in res.text, res.text
    assert f"CT {newid}: freed volume 'local:{newid}/{partial.name}'" in res.text
    assert not cts.conf_path(newid).exists() and list(images.glob("*")) == []
    assert "lock:" not in cts.conf(src)
    with cts.mounted(src) as root:
        assert tree_signature(root) == before


CLONE_PAUSED_AT_THE_END = """
import sys
from shared.ctconfig import store
from pct.cli import main
from tests.midway import hold

newid = int(sys.argv[2])
real_save = store.save

def save(conf, *args, **kwargs):
    real_save(conf, *args, **kwargs)
    if conf.vmid == newid and conf.lock is None:
        print("saved", flush=True)  # the clone's config for good: lock dropped
        hold()

store.save = save
sys.argv = ["pct", "clone", *sys.argv[1:]]
main()
"""


def test_a_clone_interrupted_just_after_its_last_save_stays_whole(cts: Containers) -> None:
    """A signal just after the clone's config lost its create lock: the undo freed the new
    volumes and left that config naming them (a container whose disks were gone)."""
    from tests.midway import signal_midway, stopped_midway

    vmid = cts.create("--rootfs", "local:0")
    newid = vmid + 1
    cts.pct.vmids.add(newid)
    proc, line = stopped_midway(CLONE_PAUSED_AT_THE_END, str(vmid), str(newid), "--full")
    try:
        assert proc.stdout is not None
        while line != "saved":  # the clone's own lines come first
            line = proc.stdout.readline().removesuffix("\n")
            assert line, "the clone ended before its last save"
        signal_midway(proc, signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    text = cts.conf(newid)
    assert "lock:" not in text, text
    rootfs = re.search(r"^rootfs: local:([^,\n]+)", text, re.M)
    assert rootfs is not None and (cts.root / "var/lib/vz/images" / rootfs.group(1)).is_dir()
    cts.pct("destroy", newid)
