"""Simple mode: the backup's layout recreated (pct.md §4.3.3, §9 cases 33, 34, 40)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.ctconfig import store
from shared.errors import AlreadyExistsError, ArchiveError, CtkitError
from shared.fakehost import add_storage
from tests.pct.restore.conftest import BASE_CONF, Backups, images, leftovers, volume_of
from tests.pct.restore.vzarchive import member_names

CASE33_CONF = """\
#web server
#second line
arch: amd64
hostname: web
memory: 1024
mp0: local:100/vm-100-disk-1.raw,mp=/data,acl=1,backup=1,size=64M
mp1: /srv/host-share,mp=/srv/share,ro=1
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=10.0.0.5/24,type=veth
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=128M
swap: 256
"""


def _mp0_tree(backups: Backups) -> Path:
    parent = backups.work / "mp0"
    (parent / "data/sub").mkdir(parents=True)
    (parent / "data/sub/file").write_text("on the volume\n")
    return parent


def test_case33_volumes_recreated_bind_appended(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.tree()
    (tree / "data").mkdir()
    archive = backups.archive(CASE33_CONF, [(tree, "./"), (_mp0_tree(backups), "./data")])
    conf = backups.restore(vmid, archive, trust_archive=True)

    saved = store.load(vmid)
    assert saved.to_text() == conf.to_text()
    assert saved.get_raw("rootfs") == f"local:{vmid}/vm-{vmid}-disk-0.raw,size=128M"
    assert (
        saved.get_raw("mp0")
        == f"local:{vmid}/vm-{vmid}-disk-1.raw,mp=/data,acl=1,backup=1,size=64M"
    )
    assert saved.get_raw("mp1") == "/srv/host-share,mp=/srv/share,ro=1"  # unchanged
    for key in ("memory", "hostname", "net0", "swap", "ostype", "arch"):
        assert saved.get_raw(key) == backups_conf_value(key)
    assert saved.description == "web server\nsecond line\n"
    assert saved.lock is None and "unprivileged" not in saved.values
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-0.raw", f"vm-{vmid}-disk-1.raw"]
    assert volume_of(saved, "rootfs").stat().st_size == 128 << 20
    assert volume_of(saved, "mp0").stat().st_size == 64 << 20

    rootfs = mounted_volume(volume_of(saved, "rootfs"))
    mp0 = mounted_volume(volume_of(saved, "mp0"))
    assert (mp0 / "sub/file").read_text() == "on the volume\n"
    assert not (rootfs / "data/sub").exists()  # the volume was mounted during extraction
    assert not (rootfs / "etc/vzdump").exists()
    assert (rootfs / "etc/hostname").read_text() == "template\n"
    assert backups.logs[:3] == [
        f"recovering backed-up configuration from '{archive}'",
        f"restoring '{archive}' now..",
        f"extracting archive '{backups.path(archive)}'",
    ]
    assert backups.logs[3].startswith("Total bytes read: ")
    assert backups.logs[4] == "merging backed-up and given configuration.."
    assert "WARNING - unsupported configuration!" not in backups.logs


def backups_conf_value(key: str) -> str:
    for line in CASE33_CONF.splitlines():
        if line.startswith(f"{key}: "):
            return line.split(": ", 1)[1]
    raise KeyError(key)


def test_storage_option_puts_every_volume_there(backups: Backups, vmid: int) -> None:
    add_storage(backups.root, "dir: other\n\tpath /srv/other\n\tcontent rootdir,images\n")
    other = backups.root / "srv/other"  # storage paths are below CTKIT_ROOT
    tree = backups.tree()
    (tree / "data").mkdir()
    archive = backups.archive(CASE33_CONF, [(tree, "./"), (_mp0_tree(backups), "./data")])
    conf = backups.restore(vmid, archive, storage="other")
    assert conf.get_raw("rootfs") == f"other:{vmid}/vm-{vmid}-disk-0.raw,size=128M"
    assert (conf.get_raw("mp0") or "").startswith(f"other:{vmid}/vm-{vmid}-disk-1.raw,")
    assert sorted(p.name for p in (other / "images" / str(vmid)).iterdir()) == [
        f"vm-{vmid}-disk-0.raw",
        f"vm-{vmid}-disk-1.raw",
    ]


def test_case34_command_line_wins(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF)
    conf = backups.restore(
        vmid, archive, params={"memory": "2048", "hostname": "new", "cores": "2"}
    )
    assert (conf.get_raw("memory"), conf.get_raw("hostname"), conf.get_raw("cores")) == (
        "2048",
        "new",
        "2",
    )
    assert conf.get_raw("swap") == "256" and (conf.get_raw("net0") or "").startswith("name=eth0")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("rootfs: local:100/vm-100-disk-0.raw", "rootfs"),
        (
            "rootfs: local:100/vm-100-disk-0.raw,size=128M\nmp0: local:100/vm-100-disk-1.raw,mp=/x",
            "mp0",
        ),
    ],
)
def test_case40_missing_size(backups: Backups, vmid: int, line: str, key: str) -> None:
    archive = backups.archive(f"hostname: a\n{line}\n")
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, archive)
    assert str(err.value) == (
        f"unable to restore CT {vmid} - unable to detect disk size - please specify {key} (size)"
    )
    assert leftovers(backups.root, vmid) == []


def test_backup_without_rootfs(backups: Backups, vmid: int) -> None:
    archive = backups.archive("hostname: a\nmemory: 512\n")
    with pytest.raises(CtkitError, match="rootfs configuration could not be recovered, please"):
        backups.restore(vmid, archive)
    assert leftovers(backups.root, vmid) == []


def test_bind_mount_rootfs_refused(backups: Backups, vmid: int) -> None:
    archive = backups.archive("rootfs: /srv/somewhere\n")
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, archive)
    assert str(err.value).endswith(
        "restoring rootfs to bind mount is only possible by specifying -rootfs manually!"
    )
    assert leftovers(backups.root, vmid) == []


def test_bind_and_device_mounts_are_root_only(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF + "mp1: /dev/sdz1,mp=/mnt/disk\n")
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, archive, is_root=False, trust_archive=True)
    assert str(err.value).endswith("restoring 'mp1' to device mount is only possible for root")
    assert leftovers(backups.root, vmid) == []


def test_bind_mount_with_backup_flag_warns(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF + "mp3: /srv/x,mp=/x,backup=1\n")
    conf = backups.restore(vmid, archive, trust_archive=True)
    start = backups.logs.index("WARNING - unsupported configuration!")
    assert backups.logs[start : start + 4] == [
        "WARNING - unsupported configuration!",
        "backup was enabled for bind mount point mp3 ('/x')",
        "mount point configuration will be restored after archive extraction!",
        "contained files will be restored to wrong directory!",
    ]
    assert start < backups.logs.index(f"restoring '{archive}' now..")
    assert conf.get_raw("mp3") == "/srv/x,mp=/x,backup=1"


def test_excluded_keys_are_never_copied(backups: Backups, vmid: int) -> None:
    conf_text = BASE_CONF + (
        "lock: backup\nparent: snap1\nunused0: local:100/vm-100-disk-7.raw\n"
        "tags: a;b\n\n[pve:pending]\nmemory: 4096\n\n[snap1]\nmemory: 64\n"
        "rootfs: local:100/vm-100-disk-0.raw,size=128M\nsnaptime: 1700000000\n"
    )
    conf = backups.restore(vmid, backups.archive(conf_text))
    saved = store.load(vmid)
    for key in ("lock", "parent", "unused0", "snaptime"):
        assert key not in saved.values
    assert saved.snapshots == {} and saved.pending.is_empty()
    assert saved.get_raw("memory") == "1024" and saved.get_raw("tags") == "a;b"
    assert conf.to_text() == saved.to_text()


def test_unused_parameter_ignored(backups: Backups, vmid: int) -> None:
    backups.restore(vmid, backups.archive(BASE_CONF), params={"unused0": "local:1"})
    assert backups.logs[0] == "ignoring 'unused0', cannot create/restore with unused volume"
    assert "unused0" not in store.load(vmid).values


def test_archive_without_config(backups: Backups, vmid: int) -> None:
    plain = backups.dump / "vzdump-lxc-100-2024_01_02-03_04_05.tar"
    tree = backups.tree()
    import subprocess

    subprocess.run(["tar", "-C", str(tree), "-cf", str(plain), "."], check=True)
    with pytest.raises(ArchiveError) as err:
        backups.restore(vmid, f"local:backup/{plain.name}")
    assert str(err.value) == (
        f"unable to restore CT {vmid} - ERROR: archive contains no configuration file"
    )
    assert leftovers(backups.root, vmid) == []


def test_existing_id_without_force(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF)
    backups.restore(vmid, archive)
    before = store.read_bytes(vmid)
    with pytest.raises(AlreadyExistsError, match=rf"^CT {vmid} already exists on node '"):
        backups.restore(vmid, archive)
    assert store.read_bytes(vmid) == before
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-0.raw"]


def test_missing_archive(backups: Backups, vmid: int) -> None:
    with pytest.raises(
        CtkitError, match=re.escape("can't find file 'local:backup/vzdump-lxc-1-x.tar'")
    ):
        backups.restore(vmid, "local:backup/vzdump-lxc-1-x.tar")
    with pytest.raises(CtkitError, match=re.escape("can't find file '/nonexistent/a.tar.zst'")):
        backups.restore(vmid, "/nonexistent/a.tar.zst")
    long = "x" * 5000  # longer than a path may be: is_file() raised ENAMETOOLONG
    with pytest.raises(CtkitError, match=re.escape(f"can't find file '{long}'")):
        backups.restore(vmid, long)
    assert not store.exists(vmid)


@pytest.mark.parametrize("compress", ["", "gz", "lzo"])
def test_other_compressions_and_paths(backups: Backups, vmid: int, compress: str) -> None:
    archive = backups.archive(BASE_CONF, compress=compress)
    path = backups.path(archive)
    conf = backups.restore(vmid, str(path))  # a path instead of a volume id
    assert conf.get_raw("hostname") == "backedup"
    assert backups.logs[2] == f"extracting archive '{path}'"


def test_suspend_mode_layout(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    """A data tree with pct.conf/pct.fw of its own (the guest's files, or the copies in
    earlier suspend-mode archives): the first pair counts, no copy stays in the container."""
    tree = backups.tree()
    (tree / "etc/vzdump").mkdir()
    (tree / "etc/vzdump/pct.conf").write_text(BASE_CONF.replace("1024", "9999"))
    (tree / "etc/vzdump/pct.fw").write_text("[OPTIONS]\nenable: 0\n")
    archive = backups.archive(BASE_CONF, [(tree, ".")], firewall="[OPTIONS]\nenable: 1\n")
    names = member_names(backups.path(archive))
    assert names.count("./etc/vzdump/pct.conf") == 2
    conf = backups.restore(vmid, archive)
    assert conf.get_raw("memory") == "1024"
    fw = backups.root / f"etc/pve/firewall/{vmid}.fw"
    assert fw.read_text() == "[OPTIONS]\nenable: 1\n"
    rootfs = mounted_volume(volume_of(conf, "rootfs"))
    assert sorted(p.name for p in (rootfs / "etc/vzdump").iterdir()) == []
