"""pct move-volume: to another storage (dir <-> btrfs) keeping the data, to another container,
Proxmox's refusals, and a failed move that leaves the source as it was."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from shared.fakehost import add_storage
from tests.pct.conftest import Containers, interrupt_mid_copy, kill_mid_copy, tree_signature

pytestmark = pytest.mark.lxc


def key_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{key}: (.*)$", text, re.M)
    return m.group(1) if m else None


def test_move_between_dir_and_btrfs_keeps_the_data(cts: Containers, btrfs_storage: str) -> None:
    vmid = cts.create("--rootfs", "local:1", "--mp0", "local:1,mp=/data")
    with cts.mounted(vmid) as root:
        (root / "data/file").write_bytes(b"payload" * 1000)
        before = tree_signature(root)
    old = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    assert key_value(cts.conf(vmid), "mp0") == f"{old},mp=/data,size=1G"
    cts.pct("start", vmid)
    err = cts.refused("move-volume", vmid, "mp0", btrfs_storage)
    assert err.strip() == "cannot move volumes of a running container"
    cts.pct("stop", vmid)

    cts.pct("move-volume", vmid, "mp0", btrfs_storage)
    text = cts.conf(vmid)
    moved = f"{btrfs_storage}:{vmid}/subvol-{vmid}-disk-0.subvol"
    assert key_value(text, "mp0") == f"{moved},mp=/data,size=1G"
    assert key_value(text, "unused0") == old and "lock:" not in text
    with cts.mounted(vmid) as root:
        assert tree_signature(root) == before

    cts.pct("move_volume", vmid, "mp0", "--storage", "local", "--delete")  # the alias, too
    text = cts.conf(vmid)
    # btrfs without quotas reports no size: the copy becomes a directory volume, as in Proxmox
    assert key_value(text, "mp0") == f"local:{vmid}/subvol-{vmid}-disk-2.subvol,mp=/data,size=1G"
    assert "unused1" not in text
    assert not (cts.root / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol").exists()
    with cts.mounted(vmid) as root:
        assert tree_signature(root) == before
    assert "only configured volumes can be moved" in cts.refused(
        "move-volume", vmid, "unused0", "local"
    )


def test_a_signal_just_after_a_reassigns_rename_waits_for_both_configs(
    cts: Containers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TERM between the volume's rename and the target's save left the volume named by
    nothing, and the source naming a volume gone (it would not start)."""
    from pct.ops import movevol
    from shared import signals

    src = cts.create("--rootfs", "local:0", "--mp0", "local:0.1,mp=/data")
    dst = cts.create("--rootfs", "local:0")
    real = movevol.rename_volume

    def renamed_then_terminated(volid: str, vmid: int) -> str:
        new = real(volid, vmid)
        os.kill(os.getpid(), signal.SIGTERM)
        return new

    monkeypatch.setattr(movevol, "rename_volume", renamed_then_terminated)
    try:
        with signals.interruptible():
            movevol.reassign(src, "mp0", dst, "mp0", log=lambda _line: None)
            assert signals.interrupted()  # noted, acted on once both configs are saved
    except KeyboardInterrupt:  # the job's Interrupted is one
        pytest.fail("the signal cut the reassign between the rename and the saves")
    assert key_value(cts.conf(src), "mp0") is None
    assert key_value(cts.conf(dst), "mp0") == f"local:{dst}/vm-{dst}-disk-1.raw,mp=/data,size=102M"
    assert (cts.root / f"var/lib/vz/images/{dst}/vm-{dst}-disk-1.raw").is_file()


def test_reassign_a_volume_to_another_container(cts: Containers) -> None:
    src = cts.create("--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    dst = cts.create("--rootfs", "local:0", "--mp1", "local:1,mp=/x")
    err = cts.refused("move-volume", src, "rootfs", "--target-vmid", dst)
    assert err.strip() == "Cannot move to/from 'rootfs'"
    err = cts.refused("move-volume", src, "mp0", "--target-vmid", dst, "--target-volume", "mp1")
    assert err.strip() == f"Target volume key 'mp1' is already in use for container '{dst}'"
    assert "but not both" in cts.refused("move-volume", src, "mp0", "local", "--target-vmid", dst)
    cts.pct("start", src)
    err = cts.refused("move-volume", src, "mp0", "--target-vmid", dst)
    assert "while the source CT is running" in err
    cts.pct("stop", src)

    cts.pct("move-volume", src, "mp0", "", dst, "mp2")
    assert key_value(cts.conf(src), "mp0") is None
    new = f"local:{dst}/vm-{dst}-disk-2.raw"
    assert key_value(cts.conf(dst), "mp2") == f"{new},mp=/data,size=1G"
    assert (cts.root / f"var/lib/vz/images/{dst}/vm-{dst}-disk-2.raw").is_file()
    assert not (cts.root / f"var/lib/vz/images/{src}/vm-{src}-disk-1.raw").exists()
    cts.pct("start", dst)
    assert cts.pct("exec", dst, "--", "ls", "/data").rc == 0
    cts.pct("stop", dst)


@pytest.mark.parametrize(
    "target_key",
    ["mp5\nlxc.hook.pre-start: /bin/touch {flag}", "net0", "lock", "lxc.hook.pre-start", "mp256"],
    ids=["newline-and-hook", "net0", "lock", "raw-lxc-key", "beyond-mp255"],
)
def test_a_target_key_that_names_no_volume_is_refused_before_anything_moves(
    cts: Containers, tmp_path: Path, target_key: str
) -> None:
    """Any key was taken: a newline and an ``lxc.hook`` line after it reached the target's
    config, and its start ran the hook as the host's root; ``net0`` or ``lock`` hid the moved
    volume from the config, and destroy left it behind."""
    flag = tmp_path / "hook-ran"
    src = cts.create("--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    dst = cts.create("--rootfs", "local:0")
    before = (cts.conf(src), cts.conf(dst))
    key = target_key.format(flag=flag)
    res = cts.pct("move-volume", src, "mp0", "--target-vmid", dst, "--target-volume", key,
                  check=False)  # fmt: skip
    assert res.rc == 2, res.text
    assert (
        "target-volume: value '" in res.err
        and "does not have a value in the enumeration" in res.err
    )
    assert res.err.strip().startswith("400 Parameter verification failed.\ntarget-volume: ")
    assert "Traceback" not in res.text and "\nlxc.hook" not in res.err, res.text
    assert (cts.conf(src), cts.conf(dst)) == before
    assert (cts.root / f"var/lib/vz/images/{src}/vm-{src}-disk-1.raw").is_file()
    cts.pct("start", dst)
    cts.pct("stop", dst)
    assert not flag.exists() and not flag.with_name("hook-ran:").exists()
    err = cts.refused("move-volume", src, "lxc.x", "--target-vmid", dst)
    assert "volume: value 'lxc.x' does not have a value in the enumeration" in err


def test_failed_move_leaves_the_source_as_it_was(cts: Containers, tiny_storage: str) -> None:
    vmid = cts.create("--rootfs", "local:0")
    before = cts.conf(vmid)
    cts.refused("move-volume", vmid, "rootfs", tiny_storage, "--delete")
    assert cts.conf(vmid) == before
    assert list((cts.root / "mnt/tiny").rglob("*disk*")) == []
    assert (cts.root / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol/bin").exists()


@pytest.mark.parametrize("bwlimit", [[], ["--bwlimit", "100000"]], ids=["cp", "rsync"])
def test_a_raw_volume_its_storage_cannot_hold_fails_the_move(
    cts: Containers, small_storage: str, bwlimit: list[str]
) -> None:
    # the image is sparse: allocating it and its file system fit, the files do not, and the
    # copy itself succeeds into the page cache; only the write-back fails
    vmid = cts.create("--rootfs", "local:0.3")
    before = cts.conf(vmid)
    err = cts.refused("move-volume", vmid, "rootfs", small_storage, "--delete", *bwlimit)
    assert f"unable to write volume 'vm-{vmid}-disk-0.raw'" in err
    assert cts.conf(vmid) == before
    assert list((cts.root / "mnt/small").rglob("*disk*")) == []
    cts.pct("start", vmid)  # the source, untouched
    assert cts.pct("exec", vmid, "--", "ls", "/bin/busybox").rc == 0
    cts.pct("stop", vmid)


def test_a_volume_of_another_container_is_never_deleted_or_given_away(cts: Containers) -> None:
    owner = cts.create("--rootfs", "local:0", "--mp0", "local:1,mp=/data")
    user, third = cts.create("--rootfs", "local:0"), cts.create("--rootfs", "local:0")
    volid = f"local:{owner}/vm-{owner}-disk-1.raw"
    with open(cts.conf_path(user), "a") as fh:
        fh.write(f"mp0: {volid},mp=/shared\n")
    before = cts.conf(user)
    err = cts.refused("move-volume", user, "mp0", "local", "--delete")
    assert f"can't delete volume '{volid}' owned by another container ({owner})" in err
    assert "owned by another container" in cts.refused(
        "move-volume", user, "mp0", "--target-vmid", third
    )
    assert cts.conf(user) == before
    assert (cts.root / f"var/lib/vz/images/{owner}/vm-{owner}-disk-1.raw").is_file()


def test_a_template_volume_moves_as_a_base_volume(cts: Containers, btrfs_storage: str) -> None:
    vmid = cts.create("--rootfs", "local:1")
    cts.pct("template", vmid)
    cts.pct("move-volume", vmid, "rootfs", btrfs_storage, "--delete")
    text = cts.conf(vmid)
    assert (
        key_value(text, "rootfs") == f"{btrfs_storage}:{vmid}/subvol-{vmid}-disk-0.subvol,size=1G"
    )
    assert "template: 1" in text and "unused" not in text
    subvol = cts.root / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    out = subprocess.run(
        ["btrfs", "property", "get", str(subvol), "ro"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ro=true"
    assert not (cts.root / f"var/lib/vz/images/{vmid}/base-{vmid}-disk-0.raw").exists()


def test_a_nested_subvolume_is_refused_not_left_out(cts: Containers, btrfs_storage: str) -> None:
    """cp -x (and rsync, btrfs send) leave a btrfs subvolume nested in the volume out: the
    copy would miss its data without a word. Move (by cp, and by rsync with a bandwidth limit)
    and full clone refuse it instead."""
    vmid = cts.create("--rootfs", f"{btrfs_storage}:0")
    volume = cts.root / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    nested = volume / "var/nested"
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(nested)], check=True)
    (nested / "precious").write_text("data")
    try:
        before = cts.conf(vmid)
        for args in (["move-volume", vmid, "rootfs", "local", "--delete"],
                     ["move-volume", vmid, "rootfs", "local", "--delete", "--bwlimit", "100000"],
                     ["clone", vmid, cts.new_vmid(), "--full", "--storage", "local"]):  # fmt: skip
            err = cts.refused(*args)
            assert "'var/nested' in the volume is another file system or btrfs subvolume" in err
        assert cts.conf(vmid) == before and (nested / "precious").read_text() == "data"
    finally:
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(nested)], check=True)


def test_a_volume_another_key_names_is_never_deleted_or_given_away(cts: Containers) -> None:
    """One volume under two keys (here mp0 and mp1, or mp0 and a pending mp1): moving one freed
    or renamed it under the other, and the container no longer started."""
    vmid = cts.create("--rootfs", "local:0", "--mp0", "local:0.05,mp=/data")
    third = cts.create("--rootfs", "local:0")
    volid = f"local:{vmid}/vm-{vmid}-disk-1.raw"
    for extra in (f"mp1: {volid},mp=/b\n", f"\n[pve:pending]\nmp1: {volid},mp=/b\n"):
        text = cts.conf(vmid)
        cts.conf_path(vmid).write_text(text + extra)
        before = cts.conf(vmid)
        err = cts.refused("move-volume", vmid, "mp0", "local", "--delete")
        assert f"you can't delete the source: mp1 also uses '{volid}'" in err
        err = cts.refused("move-volume", vmid, "mp0", "--target-vmid", third)
        assert "Cannot move volume also used by mp1 to another container" in err
        assert cts.conf(vmid) == before
        assert (cts.root / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-1.raw").is_file()
        cts.conf_path(vmid).write_text(text)
    cts.pct("move-volume", vmid, "mp0", "local", "--delete")  # alone, it moves


def test_a_move_killed_mid_copy_is_undone_by_the_next_command(cts: Containers) -> None:
    """SIGKILL runs no cleanup: the partial copy was named by no config, and the 'disk' lock
    waited for a human. The copy is the container's unused0 while it is written, and the move
    is on record: the next command frees the copy, drops its entry and the lock."""
    add_storage(cts.root, "dir: other\n\tpath /mnt/other\n\tcontent rootdir\n")
    vmid = cts.create("--rootfs", "local:1")
    with cts.mounted(vmid) as root:
        (root / "big").write_bytes(os.urandom(48 << 20))
        before = tree_signature(root)
    images = cts.root / f"mnt/other/images/{vmid}"
    kill_mid_copy(["move-volume", str(vmid), "rootfs", "other", "--bwlimit", "8000"], images)
    (partial,) = [p.name for p in images.glob("vm-*")]
    conf = cts.conf(vmid)
    assert "lock: disk\n" in conf and f"unused0: other:{vmid}/{partial}\n" in conf, conf
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw" in conf
    res = cts.pct("status", vmid)
    assert res.out == "status: stopped\n"
    assert (
        f"CT {vmid}: freed volume 'other:{vmid}/{partial}' the unfinished pct move-volume was "
        "copying" in res.err
    ), res.err
    assert f"CT {vmid}: removed lock 'disk'" in res.err
    after = cts.conf(vmid)
    assert "lock:" not in after and "unused0" not in after
    assert f"rootfs: local:{vmid}/vm-{vmid}-disk-0.raw" in after
    assert list(images.glob("*")) == []
    with cts.mounted(vmid) as root:
        assert tree_signature(root) == before


@pytest.mark.parametrize("how", ["TERM", "INT"])
def test_an_interrupted_move_of_a_raw_volume_frees_the_new_image(cts: Containers, how: str) -> None:
    # the new image's autoclear loop device goes away a moment after the unmount: freeing it
    # at once found it "in use" and left it on disk
    add_storage(cts.root, "dir: other\n\tpath /mnt/other\n\tcontent rootdir\n")
    vmid = cts.create("--rootfs", "local:1")
    with cts.mounted(vmid) as root:
        (root / "big").write_bytes(os.urandom(48 << 20))
        before = tree_signature(root)
    text = cts.conf(vmid)
    images = cts.root / f"mnt/other/images/{vmid}"
    argv = ["move-volume", str(vmid), "rootfs", "other", "--bwlimit", "8000"]
    interrupt_mid_copy(argv, images, how)
    assert list(images.glob("*")) == []
    assert cts.conf(vmid) == text
    with cts.mounted(vmid) as root:
        assert tree_signature(root) == before


def test_a_move_killed_while_deleting_the_source_has_it_deleted(
    cts: Containers, btrfs_storage: str, tmp_path: Path
) -> None:
    """With ``--delete`` the moved-away source is named by no config once the move is
    committed. Killed while it was deleted (a big volume takes a while), the source stayed on
    its storage named by nothing. The next command deletes it, as the move was asked to."""

    from tests.pct.conftest import holding_call, sigkill_group_when

    vmid = cts.create("--rootfs", f"{btrfs_storage}:1")
    source = cts.root / f"mnt/bt/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    held, marker = holding_call(tmp_path, "delete_subvolume", f"*/{source.name}")
    argv = [*held, "move-volume", str(vmid), "rootfs", "local", "--delete"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    sigkill_group_when(proc, marker.exists, "the delete of the source")
    assert source.is_dir() and f"{btrfs_storage}:{vmid}/" not in cts.conf(vmid)
    res = cts.pct("status", vmid)
    assert res.out == "status: stopped\n", res.err
    assert not source.exists(), res.err
    after = cts.conf(vmid)
    assert "lock:" not in after and str(key_value(after, "rootfs")).startswith(f"local:{vmid}/")


# the move that the scripts below pause midway: what it printed last says how it ended
MOVE_TO_STORAGE = """
with signals.interruptible():
    try:
        movevol.to_storage(vmid, "rootfs", target, delete=True)
        print("moved", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""

MOVE_PAUSED_AT_COMMIT = """
import sys
from shared import signals
from shared.ctconfig import store
from pct.ops import movevol
from tests.midway import hold

vmid, target = int(sys.argv[1]), sys.argv[2]
real_save = store.save

def save(conf, *args, **kwargs):
    real_save(conf, *args, **kwargs)
    if str(conf.values.get("rootfs", "")).startswith(target + ":"):
        print("committed", flush=True)  # the config names the copy now
        hold()

store.save = save
"""


def test_a_move_interrupted_just_after_it_named_the_copy_keeps_the_copy(
    cts: Containers, btrfs_storage: str
) -> None:
    """Ctrl-C or SIGTERM just after the config was saved naming the copy: the move's undo
    freed that copy, and with ``--delete`` the container was left naming a volume that no
    longer existed - its data gone. The save and the mark that it happened are one held step
    now; the undo frees a copy only the config does not name."""
    from tests.midway import signal_midway, stopped_midway

    vmid = cts.create("--rootfs", "local:0")
    with cts.mounted(vmid) as root:
        (root / "root/marker").write_text("data")
    proc, line = stopped_midway(MOVE_PAUSED_AT_COMMIT + MOVE_TO_STORAGE, str(vmid), btrfs_storage)
    try:
        assert line == "committed"
        signal_midway(proc, signal.SIGINT)
        out, _err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert out.splitlines()[-1] in ("moved", "interrupted"), out
    text = cts.conf(vmid)
    volid = key_value(text, "rootfs")
    assert volid is not None and volid.startswith(f"{btrfs_storage}:"), text
    assert (cts.root / f"mnt/bt/images/{volid.split(':', 1)[1].split(',')[0]}").exists(), text
    with cts.mounted(vmid) as root:
        assert (root / "root/marker").read_text() == "data"


MOVE_PAUSED_FREEING_SOURCE = """
import sys, time
from shared import signals
from pct.ops import movevol

vmid, target = int(sys.argv[1]), sys.argv[2]
real_free = movevol.free_volume

def free_volume(volid, *args, **kwargs):
    print("freeing " + volid, flush=True)  # the config names the copy, nothing the source
    time.sleep(30)
    real_free(volid, *args, **kwargs)

movevol.free_volume = free_volume
"""


def test_a_move_interrupted_before_it_freed_the_source_names_it_unused(
    cts: Containers, btrfs_storage: str
) -> None:
    """Ctrl-C or SIGTERM while ``--delete`` was about to free the source: the move was
    committed (the config names the copy), and the source stayed on its storage named by
    nothing - its space lost for good. It is named ``unused0`` now, as a source that cannot be
    freed is, and the lock is gone."""
    from tests.midway import interrupted_midway

    vmid = cts.create("--rootfs", "local:0")
    source = f"local:{vmid}/subvol-{vmid}-disk-0.subvol"
    source_dir = cts.root / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol"
    script = MOVE_PAUSED_FREEING_SOURCE + MOVE_TO_STORAGE
    out = interrupted_midway(
        script, str(vmid), btrfs_storage, at=f"freeing {source}", sig=signal.SIGTERM
    )
    assert out.splitlines()[-1] == "interrupted", out
    text = cts.conf(vmid)
    assert source_dir.is_dir() and key_value(text, "unused0") == source, text
    assert "lock:" not in text and str(key_value(text, "rootfs")).startswith(f"{btrfs_storage}:")
    res = cts.pct("set", vmid, "--delete", "unused0")
    assert res.rc == 0 and not source_dir.exists(), res.err
