"""``--force``: replace a stopped container, and never lose it when the restore fails (§9 c36)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.ctconfig import store
from shared.errors import AlreadyExistsError, CtkitError, LockError, StateError
from shared.fakehost import add_storage
from shared.runtime import lifecycle, lxcapi
from tests.midway import CHECKOUT
from tests.pct.conftest import Pct
from tests.pct.restore.conftest import Backups, images, volume_of

# No network: these containers are started.
CONF = """\
arch: amd64
hostname: {name}
memory: 256
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=128M
swap: 0
"""


def _backup(backups: Backups, name: str, *, firewall: str = "", stamp: str = "") -> str:
    tree = backups.tree(f"tree-{name}")
    (tree / "etc/marker").write_text(f"{name}\n")
    return backups.archive(
        CONF.format(name=name),
        [(tree, "./")],
        firewall=firewall,
        stamp=stamp or f"2024_01_0{len(name) % 9 + 1}-03_04_05",
    )


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _snapshot(backups: Backups, vmid: int) -> tuple[bytes, dict[str, str], bytes | None]:
    """Config bytes, volume checksums and firewall config of a container."""
    vols = {
        n: _sha(backups.root / f"var/lib/vz/images/{vmid}/{n}") for n in images(backups.root, vmid)
    }
    fw = backups.root / f"etc/pve/firewall/{vmid}.fw"
    return store.read_bytes(vmid), vols, fw.read_bytes() if fw.exists() else None


def _run(vmid: int, *command: str) -> str:
    argv = lxcapi.attach_argv(vmid, list(command))
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def _starts_with_marker(vmid: int, marker: str) -> None:
    """The container starts, and its /etc/marker says which backup it came from."""
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        assert _run(vmid, "cat", "/etc/marker") == f"{marker}\n"
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)


def test_force_replaces_a_stopped_container(backups: Backups, vmid: int) -> None:
    backups.restore(vmid, _backup(backups, "old", firewall="[OPTIONS]\nenable: 1\n"))
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-0.raw"]
    new_archive = _backup(backups, "newer")
    with pytest.raises(AlreadyExistsError):
        backups.restore(vmid, new_archive)
    conf = backups.restore(vmid, new_archive, force=True)
    assert conf.get_raw("hostname") == "newer" and conf.lock is None
    assert conf.get_raw("rootfs") == f"local:{vmid}/vm-{vmid}-disk-1.raw,size=128M"
    # the old volume is freed
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-1.raw"], backups.logs
    assert store.load(vmid).to_text() == conf.to_text()
    # an empty pct.fw in the backup leaves the firewall config alone, as in Proxmox
    assert (backups.root / f"etc/pve/firewall/{vmid}.fw").read_text() == "[OPTIONS]\nenable: 1\n"


def test_force_with_a_template_backup_frees_only_the_old_volume(
    backups: Backups, vmid: int
) -> None:
    """The new volume is named in the locked old config while it is filled, by its name before
    the template conversion renames it: the finished config names only the base volume."""
    backups.restore(vmid, _backup(backups, "old"))
    archive = backups.archive(
        CONF.format(name="tpl") + "template: 1\n", stamp="2024_01_05-03_04_05"
    )
    conf = backups.restore(vmid, archive, force=True)
    assert conf.get_raw("rootfs") == f"local:{vmid}/base-{vmid}-disk-1.raw,size=128M"
    assert images(backups.root, vmid) == [f"base-{vmid}-disk-1.raw"], backups.logs
    assert not [line for line in backups.logs if "unable to free" in line], backups.logs
    assert "unused0" not in store.load(vmid).values


def test_force_keeps_volumes_it_does_not_own(
    backups: Backups, vmid: int, new_vmid: Callable[[], int]
) -> None:
    other = new_vmid()
    backups.restore(other, _backup(backups, "other"))
    backups.restore(vmid, _backup(backups, "old"))
    conf = store.load(vmid)
    conf.set_raw("mp0", f"local:{other}/vm-{other}-disk-0.raw,mp=/foreign,size=128M")
    store.save(conf)
    backups.logs.clear()
    backups.restore(vmid, _backup(backups, "newer"), force=True)
    assert images(backups.root, other) == [f"vm-{other}-disk-0.raw"]
    assert (
        f"ignore deletion of 'local:{other}/vm-{other}-disk-0.raw', CT {vmid} isn't the owner!"
        in backups.logs
    )


def test_force_refuses_protected_and_locked(backups: Backups, vmid: int) -> None:
    archive = _backup(backups, "old")
    backups.restore(vmid, archive)
    conf = store.load(vmid)
    conf.set("protection", True)
    store.save(conf)
    before = _snapshot(backups, vmid)
    with pytest.raises(StateError) as err:
        backups.restore(vmid, archive, force=True)
    assert str(err.value) == f"unable to restore CT {vmid} - protection mode enabled"
    conf.delete("protection")
    conf.set("lock", "backup")
    store.save(conf)
    before = _snapshot(backups, vmid)
    with pytest.raises(LockError) as err2:
        backups.restore(vmid, archive, force=True)
    assert str(err2.value) == f"unable to restore CT {vmid} - CT is locked (backup)"
    assert _snapshot(backups, vmid) == before


@pytest.mark.lxc
def test_force_refuses_a_running_container(backups: Backups, vmid: int) -> None:
    archive = _backup(backups, "old")
    backups.restore(vmid, archive)
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        with pytest.raises(StateError, match=r"^can't overwrite running container$"):
            backups.restore(vmid, archive, force=True)
        assert store.load(vmid).lock is None
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)


@pytest.mark.lxc
@pytest.mark.parametrize("damage", ["truncated", "corrupt", "hostile"])
def test_failed_force_restore_keeps_the_old_container(
    backups: Backups, vmid: int, damage: str
) -> None:
    backups.restore(vmid, _backup(backups, "old", firewall="[OPTIONS]\nenable: 1\n"))
    before = _snapshot(backups, vmid)
    bad = _backup(backups, "newer", firewall="[OPTIONS]\nenable: 0\n")
    path = backups.path(bad)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0x5A for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    else:
        _hostile_tail(backups, path)
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, bad, force=True)
    assert str(err.value).startswith(f"unable to restore CT {vmid} - ")
    assert _snapshot(backups, vmid) == before  # config, volumes and firewall untouched
    _starts_with_marker(vmid, "old")


def test_force_with_a_config_too_large_to_store_keeps_the_old_container(
    backups: Backups, vmid: int
) -> None:
    """The commit wrote such a config, then freed the old volumes: a container no command
    could read any more. It is refused before anything is allocated."""
    backups.restore(vmid, _backup(backups, "old"))
    before = _snapshot(backups, vmid)
    tree = backups.tree("tree-huge")
    huge = CONF.format(name="huge") + "".join(f"x{i}: {'v' * 40}\n" for i in range(30_000))
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, backups.archive(huge, [(tree, "./")], stamp="2024_01_09-03_04_05"),
                        force=True)  # fmt: skip
    assert "invalid configuration in the archive - configuration too large" in str(err.value)
    assert _snapshot(backups, vmid) == before
    assert store.load(vmid).get_raw("hostname") == "old"


def test_restore_onto_a_full_storage_fails_and_keeps_the_old_container(
    backups: Backups, vmid: int
) -> None:
    """The new volume is a sparse image on a storage too small for the backup: tar's writes
    succeed into the page cache and only the write-back fails. The restore must fail (it
    reported success with damaged files) and ``--force`` must keep the old container."""
    backups.restore(vmid, _backup(backups, "old"))
    before = _snapshot(backups, vmid)
    tree = backups.tree("tree-big")
    (tree / "etc/marker").write_text("big\n")
    (tree / "srv").mkdir(exist_ok=True)
    (tree / "srv/big.bin").write_bytes(os.urandom(40 << 20))
    big = backups.archive(CONF.format(name="big"), [(tree, "./")], stamp="2024_02_01-03_04_05")
    small = backups.root / "mnt/small"
    small.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "small", str(small)], check=True)
    try:
        add_storage(backups.root, "dir: small\n\tpath /mnt/small\n\tcontent rootdir\n")
        with pytest.raises(CtkitError) as err:
            backups.restore(vmid, big, force=True, storage="small")
        assert str(err.value).startswith(f"unable to restore CT {vmid} - unable to write volume")
        assert "is its storage full?" in str(err.value)
        assert not list(small.glob(f"images/{vmid}/*"))  # the new volume is freed again
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert _snapshot(backups, vmid) == before
    _starts_with_marker(vmid, "old")


def _hostile_tail(backups: Backups, path: Path) -> None:
    """An archive that is valid up to a member climbing out of the root."""
    from tests.pct.restore.test_hostile import hostile_archive
    from tests.shared.archive.rawtar import member

    hostile_archive(path, CONF.format(name="newer"), [member(b"./etc/../../escape", b"x")])


def test_force_onto_a_new_id_is_a_plain_restore(backups: Backups, vmid: int) -> None:
    conf = backups.restore(vmid, _backup(backups, "old"), force=True)
    assert conf.get_raw("hostname") == "old" and images(backups.root, vmid) == [
        f"vm-{vmid}-disk-0.raw"
    ]
    assert volume_of(conf).exists()


def test_old_volume_still_in_use_is_freed_once_released(backups: Backups, vmid: int) -> None:
    backups.restore(vmid, _backup(backups, "old"))
    old = backups.root / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-0.raw"
    busy = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", str(old)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # released well after the restore reaches its commit (about a second)
    release = threading.Timer(2.5, subprocess.run, (["losetup", "-d", busy],))
    release.start()
    try:
        backups.restore(vmid, _backup(backups, "newer"), force=True)
    finally:
        release.join()
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-1.raw"], backups.logs


def test_old_volume_that_stays_busy_is_reported_and_kept_as_unused(
    backups: Backups, vmid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only warned about, it was named by no config (nor was one on a storage disabled
    meanwhile): not even `pct destroy` found it again."""
    from shared.storage import volumes

    monkeypatch.setattr(volumes, "RELEASE_PATIENCE", 0.5)
    backups.restore(vmid, _backup(backups, "old"))
    old = backups.root / f"var/lib/vz/images/{vmid}/vm-{vmid}-disk-0.raw"
    argv = ["losetup", "--find", "--show", "--read-only", str(old)]
    busy = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        conf = backups.restore(vmid, _backup(backups, "newer"), force=True)
    finally:
        subprocess.run(["losetup", "-d", busy], check=True)
    assert conf.get_raw("hostname") == "newer" and store.load(vmid).lock is None
    assert any(
        line.startswith(f"unable to free volume 'local:{vmid}/vm-{vmid}-disk-0.raw' - ")
        and "is in use" in line
        for line in backups.logs
    ), backups.logs
    assert store.load(vmid).get_raw("unused0") == f"local:{vmid}/vm-{vmid}-disk-0.raw"
    assert f"CT {vmid}: kept 'local:{vmid}/vm-{vmid}-disk-0.raw' as 'unused0'" in "\n".join(
        backups.logs
    )


def test_restore_force_frees_a_volume_only_a_snapshot_still_names(
    pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str, ctroot: Path, tmp_path: Path
) -> None:
    """A restore --force replaces the container as a destroy would: a volume only a snapshot
    of the old one named stayed on the storage, named by nothing."""
    from tests.pct.conftest import PCT

    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:1",
        "--mp1", f"{btrfs_storage}:0.1,mp=/m1")  # fmt: skip
    dumpdir = tmp_path / "dump"
    dumpdir.mkdir()
    vzdump = PCT.with_name("vzdump")
    subprocess.run([str(vzdump), str(vmid), "--dumpdir", str(dumpdir)], check=True,
                   capture_output=True)  # fmt: skip
    (archive,) = dumpdir.glob("*.tar*")
    pct("snapshot", vmid, "s1")
    pct("set", vmid, "--delete", "mp1")
    imgdir = ctroot / f"mnt/bt/images/{vmid}"
    assert f"subvol-{vmid}-disk-1.subvol" in {p.name for p in imgdir.iterdir()}
    pct("restore", vmid, archive, "--force", "--storage", btrfs_storage)
    conf = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    named = {p.name for p in imgdir.iterdir() if p.name in conf}
    assert {p.name for p in imgdir.iterdir()} == named, conf
    pct("destroy", vmid)


# a restore whose failure finds /etc/pve full when it drops its lock, in a process of its own
# (an owner record of a live process is no one's to recover)
RESTORE_FULL_AT_UNLOCK = """
import sys
from shared.atomic import WriteError
from shared.ctconfig import store
from pct.ops.restore import RestoreRequest, restore
vmid, volid = int(sys.argv[1]), sys.argv[2]
real_save = store.save
def full_when_unlocking(conf):
    if conf.vmid == vmid and conf.lock is None:
        raise WriteError("unable to write: No space left on device", OSError(28, "full"))
    real_save(conf)
store.save = full_when_unlocking
try:
    restore(RestoreRequest(vmid=vmid, archive=volid, force=True), log=print)
except Exception as err:
    print(err)
"""


def test_a_failed_force_restore_that_cannot_unlock_leaves_that_to_the_next_command(
    backups: Backups, vmid: int
) -> None:
    """The restore failed, and so did the write that drops its ``lock: create`` (/etc/pve full
    by then): the record that lets a recovery finish was dropped all the same, and the old
    container stayed locked, with an unused entry naming a freed volume, until a human came."""
    from shared.runtime import recovery

    backups.restore(vmid, _backup(backups, "old"))
    before = _snapshot(backups, vmid)
    bad_volid = _backup(backups, "newer")
    bad = backups.path(bad_volid)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    argv = [sys.executable, "-c", RESTORE_FULL_AT_UNLOCK, str(vmid), bad_volid]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=CHECKOUT).stdout
    assert "unable to remove the 'create' lock" in out and f"unable to restore CT {vmid}" in out
    assert store.load(vmid).lock == "create"
    recovery.recover(vmid, backups.logs.append)  # what the next command does first
    assert _snapshot(backups, vmid) == before, backups.logs
    _starts_with_marker(vmid, "old")


UNPRIVILEGED_CONF = CONF + "unprivileged: 1\n"


def _unprivileged_backup(backups: Backups, name: str) -> str:
    from shared.archive.idmap import DEFAULT_UNPRIVILEGED

    tree = backups.tree(f"tree-{name}")
    (tree / "etc/marker").write_text(f"{name}\n")
    subprocess.run(["chown", "-hR", "100000:100000", str(tree)], check=True)  # its root's ids
    return backups.archive(
        UNPRIVILEGED_CONF.format(name=name),
        [(tree, "./")],
        idmap=DEFAULT_UNPRIVILEGED,
        stamp="2024_03_01-03_04_05",
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.lxc
def test_an_unprivileged_backup_replaces_a_privileged_container(
    backups: Backups, vmid: int
) -> None:
    """Its start left the container's directory 0700: the unprivileged tar could not reach
    the staging mount below it, and such a restore always failed."""
    backups.restore(vmid, _backup(backups, "old"))
    _starts_with_marker(vmid, "old")
    lxcdir = backups.root / f"var/lib/lxc/{vmid}"
    assert _mode(lxcdir) == 0o700
    conf = backups.restore(vmid, _unprivileged_backup(backups, "newer"), force=True)
    assert conf.unprivileged and _mode(lxcdir) == 0o755
    _starts_with_marker(vmid, "newer")


def test_a_failed_unprivileged_restore_hides_the_privileged_container_again(
    backups: Backups, vmid: int
) -> None:
    """The allocation opened images/<vmid> (0755) for the unprivileged volume; its failure
    left the old privileged container's files there in reach of every host user."""
    backups.restore(vmid, _backup(backups, "old"))
    imgdir = backups.root / f"var/lib/vz/images/{vmid}"
    assert _mode(imgdir) == 0o700
    before = _snapshot(backups, vmid)
    bad = _unprivileged_backup(backups, "newer")
    path = backups.path(bad)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CtkitError, match=f"unable to restore CT {vmid} - "):
        backups.restore(vmid, bad, force=True)
    assert _snapshot(backups, vmid) == before
    assert _mode(imgdir) == 0o700


def test_pct_unlock_during_a_force_restore_leaves_no_unused_entry(
    backups: Backups, vmid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore then refuses to commit, frees its new volume, and the old config kept an
    ``unused0`` naming that freed volume."""
    from pct.ops import restore as restore_op

    backups.restore(vmid, _backup(backups, "old"))
    before = _snapshot(backups, vmid)
    real_finish = restore_op._finish

    def unlocked_meanwhile(*args: object, **kw: object) -> None:
        conf = store.load(vmid)
        assert conf.get_raw("unused0") is not None  # the new volume on record
        conf.delete("lock")  # what `pct unlock` does
        store.save(conf)
        real_finish(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(restore_op, "_finish", unlocked_meanwhile)
    with pytest.raises(LockError, match="no longer locked for creation"):
        backups.restore(vmid, _backup(backups, "newer"), force=True)
    assert _snapshot(backups, vmid) == before
