"""``pct restore`` from a restic storage: a real container backed up with vzdump into a real
local repository, restored into a new id (privileged and unprivileged, either way) and over
the old one with --force; content, owners, modes, links, xattrs and ACLs survive."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.vzdump.engine.conftest import CT, Host, pct, run, vzdump
from tests.vzdump.engine.test_restic import add_storage, listing

pytestmark = pytest.mark.lxc
BIN = Path(__file__).resolve().parents[3] / ".venv/bin"


@pytest.fixture
def rhost(ctroot: Path, busybox_template: Path, new_vmid: Callable[[], int]) -> Iterator[Host]:
    from shared.testbed import stop_containers

    yield Host(ctroot, busybox_template, new_vmid)
    stop_containers(ctroot)


def fill(ct: CT) -> None:
    data = ct.write("srv/data.bin", os.urandom(300_000), uid=1000)
    os.chmod(data, 0o640)
    ct.write("srv/other.txt", b"hello", uid=33)
    (data.parent / "link").symlink_to("data.bin")
    os.lchown(data.parent / "link", *ct.host_ids(1000, 1000))
    long = ct.write("srv/" + "d" * 120 + "/" + "f" * 150, b"long name", uid=7)
    (data.parent / "longlink").symlink_to(long.relative_to(data.parent))
    os.lchown(data.parent / "longlink", *ct.host_ids())
    os.mkfifo(data.parent / "pipe")
    os.mknod(data.parent / "null", 0o20644, os.makedev(1, 3))
    for name in ("pipe", "null"):
        os.lchown(data.parent / name, *ct.host_ids())
    subprocess.run(["setfattr", "-n", "user.color", "-v", "blue", str(data)], check=True)
    subprocess.run(["setfacl", "-m", f"u:{ct.host_ids(1234)[0]}:r", str(data)], check=True)


def tree(root: Path, shift: int) -> dict[str, tuple[int, int, int, str]]:
    """rel path → (mode, uid, gid, content digest or link target) in container ids."""
    out = {}
    long = "srv/" + "d" * 120 + "/" + "f" * 150
    for rel in ("srv", "srv/data.bin", "srv/other.txt", "srv/link", long, "srv/longlink"):
        path = root / rel
        st = os.lstat(path)
        what = os.readlink(path) if path.is_symlink() else (
            str(hash(path.read_bytes())) if path.is_file() else "dir")  # fmt: skip
        out[rel] = (st.st_mode, st.st_uid - shift, st.st_gid - shift, what)
    return out


def mounted_root(vmid: int) -> Path:
    out = pct("mount", str(vmid))
    return Path(out.strip().rsplit(" ", 1)[-1].strip("'"))


def test_round_trip_priv_unpriv_and_force(rhost: Host) -> None:
    add_storage(rhost.root)
    ct = rhost.create(unprivileged=True)
    fill(ct)
    before = tree(ct.volume(), 100000)
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc == 0, res.err
    (volid,) = [r["volid"] for r in listing() if r["vmid"] == ct.vmid]
    # into a new id, unprivileged as backed up, then privileged
    for unpriv, shift in (("1", 100000), ("0", 0)):
        new = rhost.new_vmid()
        res = run([str(BIN / "pct"), "restore", str(new), str(volid), "--storage", "local",
                   "--unprivileged", unpriv])  # fmt: skip
        assert res.rc == 0, res.err
        restored = CT(new, rhost.root, unpriv == "1")
        assert tree(restored.volume(), shift) == before
        assert stat.S_ISFIFO(os.lstat(restored.volume() / "srv/pipe").st_mode)
        assert not os.path.lexists(restored.volume() / "srv/null")  # not an empty file
        data = restored.volume() / "srv/data.bin"
        attr = subprocess.run(["getfattr", "--only-values", "-n", "user.color", str(data)],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert attr == "blue"
        acl = subprocess.run(["getfacl", "-n", "-c", str(data)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        assert f"user:{1234 + shift}:r--" in acl
        assert f"hostname: ct{ct.vmid % 1000}" in restored.conf()
    # over the original with --force: the old CT is replaced only when the new one is complete
    (ct.volume() / "srv/other.txt").write_bytes(b"changed")
    res = run([str(BIN / "pct"), "restore", str(ct.vmid), str(volid), "--force"])
    assert res.rc == 0, res.err
    assert (ct.volume() / "srv/other.txt").read_bytes() == b"hello"
    # a volume id naming no snapshot: one line, the CT untouched
    missing = str(volid)[:-9] + "00:00:00Z"
    res = run([str(BIN / "pct"), "restore", str(ct.vmid), missing, "--force"])
    assert res.rc != 0 and "can't find backup" in res.err and len(res.lines) == 1, res.err
    assert (ct.volume() / "srv/other.txt").read_bytes() == b"hello"


def test_mount_points_simple_and_advanced(rhost: Host) -> None:
    """A backup=1 volume mount point comes back in simple mode (recreated from the backup's
    config) and in advanced mode (the layout given on the command line)."""
    add_storage(rhost.root)
    ct = rhost.create(unprivileged=True, extra=["--mp0", "local:0,mp=/data,backup=1"])
    ct.write("inside.txt", b"on mp0", key="mp0", uid=5)
    ct.write("srv/root.txt", b"on rootfs")
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (volid,) = [str(r["volid"]) for r in listing() if r["vmid"] == ct.vmid]
    simple = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(simple), volid, "--storage", "local"])
    assert res.rc == 0, res.err
    restored = CT(simple, rhost.root, True)
    inside = restored.volume("mp0") / "inside.txt"
    assert inside.read_bytes() == b"on mp0" and inside.stat().st_uid == 100005
    assert (restored.volume() / "srv/root.txt").read_bytes() == b"on rootfs"
    advanced = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(advanced), volid, "--rootfs", "local:0"])
    assert res.rc == 0, res.err
    flat = CT(advanced, rhost.root, True)
    assert "mp0" not in flat.conf()
    assert (flat.volume() / "data/inside.txt").read_bytes() == b"on mp0"


def test_foreign_snapshot_layout_is_refused(rhost: Host) -> None:
    """A snapshot tagged like a vzdump backup but laid out otherwise (another tool, a hostile
    repository): the restore refuses it in one line and leaves no container behind."""
    from tests.vzdump.engine.test_restic import restic_cmd

    add_storage(rhost.root)
    evil = rhost.root / "evil"
    (evil / "config").mkdir(parents=True)
    (evil / "config/pct.conf").write_text("arch: amd64\nrootfs: local:0\n")
    (evil / "outside").mkdir()
    (evil / "outside/file").write_text("x")
    vmid = rhost.new_vmid()
    env_cwd = ["--tag", "vzdump", "--tag", "type=lxc", "--tag", f"vmid={vmid}"]
    restic_cmd(rhost.root, "backup", *env_cwd, str(evil / "config"), str(evil / "outside"))
    (volid,) = [str(r["volid"]) for r in listing() if r["vmid"] == vmid]
    res = run([str(BIN / "pct"), "restore", str(vmid), volid, "--storage", "local"])
    assert res.rc != 0, res.err
    assert "unexpected member" in res.lines[-1], res.err
    assert not (rhost.root / f"etc/pve/lxc/{vmid}.conf").exists()


def test_dump_starts_by_tags_and_older_backups_by_id(rhost: Host) -> None:
    """A backup carries its time as a tag, so its dump starts (by ``--tag ... latest``) while
    the snapshot is still being looked up. A backup written before that tag (the tag removed
    here) is dumped by its id after the lookup, and restores as before."""
    from shared.backups.resticstream import open_snapshot
    from shared.storage.api import restic_volume
    from tests.vzdump.engine.test_restic import restic_cmd

    add_storage(rhost.root)
    ct = rhost.create()
    ct.write("srv/data.txt", b"payload")
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (row,) = listing()
    volid = str(row["volid"])
    stamp = volid.rsplit("/", 1)[1]
    found = restic_volume(volid)
    assert found is not None
    stream = open_snapshot(*found)
    try:
        assert f"time={stamp}" in stream.snapshot.tags
        assert stream._proc.proc.args[-2:] == ["latest", "/"]  # type: ignore[index]
    finally:
        stream.close()
    # a dump stopped while it opens the repository can leave its lock behind: stale now
    restic_cmd(rhost.root, "unlock")
    # another snapshot of the shared repository with the very same tags, and newer: the
    # dump started by tags is the wrong one, so the backup is dumped by its id instead
    stray = rhost.root / "stray"
    stray.mkdir()
    restic_cmd(rhost.root, "backup", "--tag", f"vzdump,type=lxc,vmid={ct.vmid},time={stamp}",
               "--time", "2099-01-01 00:00:00", str(stray))  # fmt: skip
    stream = open_snapshot(*found)
    try:
        assert stream._proc.proc.args[-2:] == [stream.snapshot.id, "/"]  # type: ignore[index]
        assert stream.read(1 << 16).startswith(b"./")  # the backup's own first member
    finally:
        stream.close()
    restic_cmd(rhost.root, "unlock")
    restic_cmd(rhost.root, "tag", "--remove", f"time={stamp}", stream.snapshot.id)
    stream = open_snapshot(*found)
    try:
        assert stream._proc.proc.args[-2:] == [stream.snapshot.id, "/"]  # type: ignore[index]
    finally:
        stream.close()
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), volid, "--storage", "local"])
    assert res.rc == 0, res.err
    assert (CT(new, rhost.root, True).volume() / "srv/data.txt").read_bytes() == b"payload"


def test_a_restore_goes_on_when_the_node_key_is_gone(rhost: Host) -> None:
    """The dump starts with this node's key; a key no longer in the repository (removed by
    hand, or the repository replaced) is dropped by the lookup, and the dump starts again
    with the storage's password: the restore succeeds."""
    add_storage(rhost.root)
    ct = rhost.create()
    ct.write("srv/data.txt", b"payload")
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (row,) = listing()
    record = rhost.root / "etc/pve/priv/storage/offsite.key.json"
    (rhost.root / "repo/keys" / json.loads(record.read_text())["key"]).unlink()
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), str(row["volid"]), "--storage", "local"])
    assert res.rc == 0, res.err
    assert (CT(new, rhost.root, True).volume() / "srv/data.txt").read_bytes() == b"payload"
    assert not record.exists()


def test_a_backup_whose_retag_was_killed_restores_and_is_pruned_whole(rhost: Host) -> None:
    """A vzdump killed while restic re-tagged its snapshot (the size fix-up) left the old
    snapshot beside the new: the backup named 2 snapshots, could not be restored, and every
    later retention of the guest failed on it."""
    from shared.storage.api import restic_volume
    from tests.shared.storage.test_resticbackups import killed_retag
    from tests.vzdump.engine.test_restic import restic_cmd, restic_json

    repo = add_storage(rhost.root)
    ct = rhost.create()
    ct.write("srv/data.txt", b"payload")
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (row,) = listing()
    volid = str(row["volid"])
    found = restic_volume(volid)
    assert found is not None
    (snap,) = restic_json(rhost.root, "snapshots")  # type: ignore[misc]
    killed_retag(
        found[0], found[1], lambda: restic_cmd(rhost.root, "tag", "--add", "size=1", snap["id"])
    )
    assert [r["volid"] for r in listing()] == [volid]
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), volid, "--storage", "local"])
    assert res.rc == 0, res.err
    assert (CT(new, rhost.root, True).volume() / "srv/data.txt").read_bytes() == b"payload"
    ct.write("srv/data.txt", b"second")
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    (row,) = listing()
    assert row["volid"] != volid
    assert len(list((repo / "snapshots").iterdir())) == 1  # both copies forgotten


def test_a_file_capability_survives_an_unprivileged_round_trip(rhost: Host) -> None:
    """restic reads an unprivileged container's tree on the host, where a file capability names
    the container's root by host id (version 3, root id 100000): the restore, whose tar runs in
    the container's user namespace, could not write it and lost it without a word."""
    add_storage(rhost.root)
    ct = rhost.create(unprivileged=True)
    pinger = ct.write("usr/bin/pinger", b"#!/bin/sh\n")
    in_ns = ["lxc-usernsexec", "-m", "b:0:100000:65536", "--"]
    subprocess.run([*in_ns, "setcap", "cap_net_raw+ep", str(pinger)], check=True)
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc == 0, res.err
    (volid,) = [r["volid"] for r in listing() if r["vmid"] == ct.vmid]
    for unpriv in ("1", "0"):
        new = rhost.new_vmid()
        res = run([str(BIN / "pct"), "restore", str(new), str(volid), "--storage", "local",
                   "--unprivileged", unpriv])  # fmt: skip
        assert res.rc == 0, res.err
        restored = CT(new, rhost.root, unpriv == "1").volume() / "usr/bin/pinger"
        getcap = [*in_ns, "getcap", str(restored)] if unpriv == "1" else ["getcap", str(restored)]
        seen = subprocess.run(getcap, capture_output=True, text=True, check=True).stdout
        assert seen.split() == [str(restored), "cap_net_raw=ep"], (unpriv, seen)


def test_a_suspend_mode_backup_reads_a_file_rewritten_at_the_same_size_and_time(
    rhost: Host,
) -> None:
    """The suspend-mode copy is new every time, and restic was told to ignore its inodes and
    ctimes: a file rewritten at the same size and modification time (cp -p, tar x, touch -r)
    passed for unchanged, and the next backup kept, and restored, its old content."""
    add_storage(rhost.root)
    ct = rhost.create(start=True)
    path = ct.write("srv/app.conf", b"hello\n")
    before = os.stat(path)
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    assert res.rc == 0, res.err
    path.write_bytes(b"HELLO\n")  # the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same time
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    assert res.rc == 0, res.err
    volid = sorted(str(r["volid"]) for r in listing() if r["vmid"] == ct.vmid)[-1]
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), volid, "--storage", "local"])
    assert res.rc == 0, res.err
    assert (CT(new, rhost.root, True).volume() / "srv/app.conf").read_bytes() == b"HELLO\n"
    pct("stop", str(ct.vmid))


def test_a_device_node_restic_cannot_restore_is_named(rhost: Host) -> None:
    """restic's dump gives a device node as an empty file without its numbers: it was left out
    of the restore without a word."""
    add_storage(rhost.root)
    ct = rhost.create(unprivileged=False)
    node = ct.volume() / "srv/null"
    node.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    ct.write("srv/empty", b"")  # an empty file is no device node: restored, not named
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc == 0, res.err
    (volid,) = [r["volid"] for r in listing() if r["vmid"] == ct.vmid]
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), str(volid), "--storage", "local"])
    assert res.rc == 0, res.err
    warning = (
        "WARN: 1 device node(s) left out, first '/srv/null': restic keeps no device numbers "
        "(a backup to a dir storage keeps them)"
    )
    assert warning in res.out.decode().splitlines(), res.out
    restored = CT(new, rhost.root, False).volume() / "srv"
    assert (restored / "empty").is_file() and not (restored / "null").exists()
