"""TERM, HUP and INT in the middle of ``pct restore``: the restore cleans up, exits 130 with one
line, and an existing container replaced with ``--force`` is left as it was and starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shared import paths
from shared.ctconfig import store
from shared.errors import StorageError
from shared.runtime import lifecycle, lxcapi
from tests.pct.conftest import holding_tool, sigkill_group_when, until_extracting
from tests.pct.restore.conftest import Backups, images, leftovers
from tests.pct.restore.test_cli import PCT, REPO
from tests.pct.restore.test_trust import CONF

BIG = 24 << 20  # random bytes: read at --bwlimit 4096 KiB/s, extraction takes about 6 s
BWLIMIT = "4096"


def _archive(backups: Backups, name: str, size: int = 0) -> str:
    tree = backups.tree(f"tree-{name}")
    (tree / "etc/marker").write_text(f"{name}\n")
    if size:
        with open(tree / "big", "wb") as fh:
            fh.write(os.urandom(size))
    stamp = "2024_01_02-03_04_05" if size else "2024_01_01-03_04_05"
    return backups.archive(CONF.replace("trusted", name), [(tree, "./")], stamp=stamp)


def _restore_killed(vmid: int, archive: str, sig: signal.Signals, *force: str) -> tuple[int, str]:
    """Run ``pct restore``, send ``sig`` a second into the extraction; exit code and stderr."""
    argv = [*PCT, "restore", str(vmid), archive, "--bwlimit", BWLIMIT, *force]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    try:
        until_extracting(proc)
        try:
            proc.wait(timeout=1.0)
            pytest.fail("the restore ended before the signal")
        except subprocess.TimeoutExpired:
            pass
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()


def _state(backups: Backups, vmid: int) -> tuple[bytes, list[str]]:
    return store.read_bytes(vmid), images(backups.root, vmid)


def _mounts(root: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if str(root) in line]


@pytest.mark.lxc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=str)
def test_signal_during_force_restore_keeps_the_old_container(
    backups: Backups, vmid: int, sig: signal.Signals
) -> None:
    backups.restore(vmid, _archive(backups, "old"))
    before = _state(backups, vmid)
    code, err = _restore_killed(vmid, _archive(backups, "newer", BIG), sig, "--force")

    assert code == 130, err
    assert err.splitlines()[-1] == "interrupted by signal", err
    assert "Traceback" not in err
    assert _state(backups, vmid) == before  # same config (no lock), no new volume left
    assert store.load(vmid).lock is None
    assert _mounts(backups.root) == []
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        argv = lxcapi.attach_argv(vmid, ["cat", "/etc/marker"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "old\n"
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)


def test_signal_during_restore_to_a_new_id_leaves_nothing(backups: Backups, vmid: int) -> None:
    code, err = _restore_killed(vmid, _archive(backups, "newer", BIG), signal.SIGTERM)
    assert code == 130, err
    assert err.splitlines()[-1] == "interrupted by signal", err
    assert leftovers(backups.root, vmid) == []
    assert not paths.lxc_dir(vmid).exists()


def test_a_new_volume_the_cleanup_cannot_free_yet_is_freed_by_the_next_command(
    backups: Backups, vmid: int
) -> None:
    """A TERM's cleanup found the new image still busy (a loop device the kernel lets go of a
    moment after the unmount, here one held on purpose): the config and the record went, and
    the image stayed, named by nothing. Now both stay with it, and the next command frees it."""
    archive = _archive(backups, "newer", BIG)
    image = backups.root / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-0.raw"
    argv = [*PCT, "restore", str(vmid), archive, "--bwlimit", BWLIMIT, "--rootfs", "local:1"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    busy = ""
    try:
        until_extracting(proc)
        losetup = ["losetup", "--find", "--show", "--read-only", str(image)]
        busy = subprocess.run(losetup, capture_output=True, text=True, check=True).stdout.strip()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode == 130, out
        assert f"unable to free volume 'local:{vmid}/vm-{vmid}-disk-0.raw' - " in out
        assert store.exists(vmid) and image.exists()  # still on record: not named by nothing
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if busy:
            subprocess.run(["losetup", "-d", busy], capture_output=True, check=False)
    listed = subprocess.run([*PCT, "list"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert f"freed volume 'local:{vmid}/vm-{vmid}-disk-0.raw'" in listed.stderr
    assert leftovers(backups.root, vmid) == []


@pytest.mark.parametrize("planted", ["lxc dir", "rootfs dir", "rootfs file"])
def test_planted_symlink_at_the_staging_dir_is_refused(
    backups: Backups, vmid: int, planted: str
) -> None:
    victim = backups.work / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host file\n")
    lxc_dir = paths.lxc_dir(vmid)
    lxc_dir.parent.mkdir(parents=True, exist_ok=True)
    if planted == "lxc dir":
        lxc_dir.symlink_to(victim, target_is_directory=True)
    else:
        lxc_dir.mkdir()
        if planted == "rootfs dir":
            (lxc_dir / "rootfs").symlink_to(victim, target_is_directory=True)
        else:
            (lxc_dir / "rootfs").write_text("")
    with pytest.raises(StorageError) as err:
        backups.restore(vmid, _archive(backups, "newer"))
    assert str(err.value) == (
        f"unable to restore CT {vmid} - refusing to mount the volumes of CT {vmid} at "
        f"'{paths.lxc_rootfs(vmid)}' - a symlink or a file is in the way"
    )
    assert sorted(os.listdir(victim)) == ["keep"]
    assert (victim / "keep").read_text() == "host file\n"
    assert not store.exists(vmid) and images(backups.root, vmid) == []
    assert _mounts(backups.root) == []


def _restore_sigkilled(vmid: int, archive: str, *force: str) -> None:
    """Run ``pct restore`` and SIGKILL its process group a second into the extraction."""
    argv = [*PCT, "restore", str(vmid), archive, "--bwlimit", BWLIMIT, *force]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ.copy(), start_new_session=True)  # fmt: skip
    try:
        until_extracting(proc)
        time.sleep(1.0)
        assert proc.poll() is None, "the restore ended before the kill"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # its tar and zstd die with it
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the restore's processes stay"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _pct(*args: object) -> subprocess.CompletedProcess[str]:
    argv = [*PCT, *map(str, args)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


@pytest.mark.lxc
def test_sigkill_during_restore_to_a_new_id_is_undone_by_the_next_command(
    backups: Backups, vmid: int
) -> None:
    """Killed, the restore ran no cleanup: its staging mount of the new volume stayed in the
    host's mount namespace (``pct destroy`` failed: '... is in use'), and the locked config
    waited for a human. The next restore of the id undoes it first and goes ahead."""
    archive = _archive(backups, "newer", BIG)
    _restore_sigkilled(vmid, archive)
    assert _mounts(backups.root) == []
    assert store.load(vmid).lock == "create"
    (volume,) = images(backups.root, vmid)
    res = _pct("restore", vmid, archive)
    assert res.returncode == 0, res.stderr
    assert (
        f"CT {vmid}: freed volume 'local:{vmid}/{volume}' the unfinished pct restore allocated"
        in res.stdout + res.stderr
    )
    assert f"CT {vmid}: removed the config of the unfinished pct restore" in res.stdout + res.stderr
    conf = store.load(vmid)
    assert conf.lock is None and images(backups.root, vmid) == [volume]  # its name again
    res = _pct("destroy", vmid)
    assert res.returncode == 0, res.stderr
    assert leftovers(backups.root, vmid) == []


@pytest.mark.lxc
def test_sigkill_during_force_restore_keeps_the_old_container(backups: Backups, vmid: int) -> None:
    """``--force`` keeps the old config while the new volumes are filled: killed, the new
    volume was named nowhere and leaked. It is on record as ``unusedN`` of the locked config,
    and the next command frees it and unlocks the old container, which is untouched."""
    backups.restore(vmid, _archive(backups, "old"))
    old = store.load(vmid)
    _restore_sigkilled(vmid, _archive(backups, "newer", BIG), "--force")
    assert _mounts(backups.root) == []
    conf = store.load(vmid)
    assert conf.lock == "create"
    assert conf.get_raw("rootfs") == old.get_raw("rootfs")
    new = [name for name in images(backups.root, vmid) if name not in str(old.get_raw("rootfs"))]
    assert len(new) == 1, images(backups.root, vmid)
    assert conf.get_raw("unused0") == f"local:{vmid}/{new[0]}"
    res = _pct("status", vmid)
    assert (res.returncode, res.stdout) == (0, "status: stopped\n"), res.stderr
    assert (
        f"CT {vmid}: freed volume 'local:{vmid}/{new[0]}' the unfinished pct restore --force "
        "allocated" in res.stderr
    )
    assert f"CT {vmid}: kept the container the unfinished restore was to replace" in res.stderr
    assert store.load(vmid).values == old.values  # every key as before: no lock, no unused0
    assert images(backups.root, vmid) == [n for n in images(backups.root, vmid) if n != new[0]]
    assert len(images(backups.root, vmid)) == 1
    res = _pct("destroy", vmid)
    assert res.returncode == 0, res.stderr
    assert leftovers(backups.root, vmid) == []


@pytest.mark.lxc
@pytest.mark.parametrize(("op", "mode"), [("restore", "force"), ("create", "")])
def test_an_unfinished_restore_never_frees_a_volume_it_did_not_make(
    backups: Backups, vmid: int, op: str, mode: str
) -> None:
    """The recovery frees only the volumes the record lists that the id owns and, for a
    ``--force`` restore, that the kept container does not use; a new container's config that
    names a volume of the id the record does not list is kept. A record naming the old rootfs
    or another container's volume (stale, or written by someone else) costs no data."""
    other = vmid + 1
    archive = _archive(backups, "old")
    backups.restore(vmid, archive)
    backups.restore(other, archive)
    mine, theirs = store.load(vmid).get_raw("rootfs"), store.load(other).get_raw("rootfs")
    volids = [str(v).split(",")[0] for v in (mine, theirs)]
    if op == "create":
        volids = volids[1:]
    path = paths.ct_conf(vmid)
    path.write_text("lock: create\n" + path.read_text())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    record = {"vmid": vmid, "op": op, "pid": 1, "start": 0, "boot": boot,
              "lock": "create", "mode": mode, "volumes": " ".join(volids)}  # fmt: skip
    owners = backups.root / "var/lib/ctkit/owners"
    owners.mkdir(parents=True, exist_ok=True)
    (owners / f"owner-{vmid}.json").write_text(json.dumps(record))
    res = _pct("status", vmid)
    assert "freed volume" not in res.stderr, res.stderr
    for ct in (vmid, other):
        assert len(images(backups.root, ct)) == 1, images(backups.root, ct)
    assert res.returncode == 0 and store.load(vmid).lock is None
    if op == "create":
        assert "kept the config, it names volumes the unfinished pct create" in res.stderr
    for ct in (vmid, other):
        assert _pct("destroy", ct).returncode == 0


@pytest.mark.parametrize("force", [False, True], ids=["new id", "--force"])
def test_a_template_restore_killed_after_its_conversion_leaves_no_nameless_volume(
    backups: Backups, vmid: int, force: bool
) -> None:
    """The template conversion renames each new volume (``vm-`` → ``base-``) before the
    commit. Killed in between, the owner record (and the locked config) still named it by its
    old name: the recovery 'freed' that missing name and removed the config, or unlocked the
    old container, and the base volume stayed behind, immutable and named by nothing."""
    if force:
        backups.restore(vmid, _archive(backups, "old"))
    old = images(backups.root, vmid)
    archive = backups.archive(CONF.replace("trusted", "tpl") + "template: 1\n",
                              stamp="2024_01_05-03_04_05")  # fmt: skip
    env, marker = holding_tool(backups.work, "chattr", "'+i '*")
    argv = [*PCT, "restore", str(vmid), archive, *(["--force"] if force else [])]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the template conversion")
    try:
        assert f"base-{vmid}-disk-{len(old)}.raw" in images(backups.root, vmid)
        res = _pct("list")
        assert res.returncode == 0, res.stderr
        assert f"CT {vmid}: restore (pid {proc.pid}) ended without cleaning up" in res.stderr
        assert images(backups.root, vmid) == old, res.stderr
        if force:
            assert store.load(vmid).lock is None
        else:
            assert not store.exists(vmid)
    finally:
        directory = backups.root / "var/lib/vz/images" / str(vmid)
        for leftover in directory.glob("base-*") if directory.is_dir() else []:
            subprocess.run(["chattr", "-i", str(leftover)], check=False)
    if force:
        assert _pct("destroy", vmid).returncode == 0
    assert leftovers(backups.root, vmid) == []


def test_a_force_restore_killed_while_freeing_the_old_volume_has_it_freed(
    backups: Backups, vmid: int
) -> None:
    """Committed, the restore frees the volumes of the container it replaced; those are named
    by no config any more. Killed while it did (a big directory volume takes long to remove;
    here a loop device keeps the old image busy, and the restore waits for it), the old
    volume stayed on the storage named by nothing. The next command frees it."""
    backups.restore(vmid, _archive(backups, "old"))
    (old,) = images(backups.root, vmid)
    image = backups.root / f"var/lib/vz/images/{vmid}/{old}"
    loopdev = subprocess.run(["losetup", "-f", "--show", "-r", str(image)], check=True,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    proc = None
    try:
        argv = [*PCT, "restore", str(vmid), _archive(backups, "newer"), "--force"]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=os.environ.copy(), start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while old in store.read_bytes(vmid).decode() or store.load(vmid).lock:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the commit was not reached"
            time.sleep(0.02)
        time.sleep(0.5)  # freeing the old volume: it waits for the loop device to go
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["losetup", "-d", loopdev], check=False)
    assert old in images(backups.root, vmid) and old not in store.read_bytes(vmid).decode()
    res = _pct("list")
    assert res.returncode == 0, res.stderr
    assert f"freed volume 'local:{vmid}/{old}'" in res.stderr, res.stderr
    assert old not in images(backups.root, vmid) and len(images(backups.root, vmid)) == 1
    assert store.load(vmid).get_raw("hostname") == "newer"
    assert not (backups.root / f"var/lib/ctkit/owners/owner-{vmid}.json").exists()
    assert _pct("destroy", vmid).returncode == 0
    assert leftovers(backups.root, vmid) == []


@pytest.mark.lxc
def test_a_signal_after_the_commit_leaves_the_restored_container(
    backups: Backups, vmid: int, tmp_path: Path
) -> None:
    """The new config was in place and the old volume being freed when the TERM came: the
    restore exited 130 'interrupted by signal', as if the old container were still there."""
    backups.restore(vmid, _archive(backups, "old"))
    (old_image,) = images(backups.root, vmid)
    marker = tmp_path / "freeing"
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    real = subprocess.run(["sh", "-c", "command -v losetup"], capture_output=True, text=True)
    (fakebin / "losetup").write_text(  # the old volume's check for users: paused a moment
        f'#!/bin/sh\ncase "$*" in *"{old_image}"*) touch {marker}; sleep 1;; esac\n'
        f'exec {real.stdout.strip()} "$@"\n'
    )
    (fakebin / "losetup").chmod(0o755)
    env = dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}")
    argv = [*PCT, "restore", str(vmid), _archive(backups, "newer"), "--force"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no old volume freed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"CT {vmid} is restored - the signal came after the restore was complete" in err
    assert old_image not in images(backups.root, vmid)  # freed all the same
    assert store.load(vmid).lock is None


def test_a_signal_during_a_volume_s_template_conversion_leaves_no_nameless_volume(
    backups: Backups, vmid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal right after the rename to ``base-``: the cleanup was not told of the new
    name, freed the old one (gone) and left the base volume, immutable and named by nothing,
    for good."""
    from shared import signals
    from shared.runtime import template

    real = template.convert_to_base

    def interrupted_after(volid: str) -> str:
        new = real(volid)
        os.kill(os.getpid(), signal.SIGINT)
        return new

    monkeypatch.setattr(template, "convert_to_base", interrupted_after)
    archive = backups.archive(CONF.replace("trusted", "tpl") + "template: 1\n",
                              stamp="2024_01_05-03_04_05")  # fmt: skip
    with signals.interruptible(), pytest.raises(KeyboardInterrupt):
        backups.restore(vmid, archive)
    assert not store.exists(vmid)
    assert leftovers(backups.root, vmid) == []


def test_a_signal_during_the_start_after_a_restore_says_the_restore_is_complete(
    backups: Backups, vmid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 130 with `interrupted by signal` alone read as a failed restore, while the new
    container was committed (and ran)."""
    from pct.ops import restore as restore_op

    def interrupted_start(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(restore_op.lifecycle, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        backups.restore(vmid, _archive(backups, "new"), start=True)
    assert f"CT {vmid} is restored - the signal came during its start" in backups.logs
    assert store.load(vmid).lock is None
