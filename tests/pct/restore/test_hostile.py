"""Untrusted archives: nothing outside the new root file system changes, and a failure cleans up.

The archives start like a vzdump archive (pct.conf, pct.fw, ``./``) and then carry one hostile
member, written byte by byte (GNU tar refuses to write most of them).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from shared import paths
from shared.ctconfig import store
from shared.errors import ArchiveError, CtkitError
from tests.pct.restore.conftest import BASE_CONF, Backups, leftovers, volume_of
from tests.pct.restore.test_cli import pct
from tests.shared.archive import rawtar
from tests.shared.archive.manifest import Manifest, diff, record

CONF = BASE_CONF.replace("debian", "unmanaged")
UNPRIVILEGED = CONF + "unprivileged: 1\n"


def hostile_archive(path: Path, conf: str, payload: Sequence[bytes]) -> Path:
    """``path`` (``.tar`` or ``.tar.zst``): config members, ``./``, payload, ``./later``."""
    data = rawtar.archive(
        rawtar.member(b"./etc/vzdump/pct.conf", conf.encode()),
        rawtar.member(b"./etc/vzdump/pct.fw", b""),
        rawtar.directory(b"./"),
        rawtar.directory(b"./etc/"),
        *payload,
        rawtar.member(b"./later", b"late"),
    )
    if path.name.endswith(".zst"):
        data = subprocess.run(
            ["zstd", "-q", "-c"], input=data, capture_output=True, check=True
        ).stdout
    path.write_bytes(data)
    return path


def _cases(canary: Path, target: Path) -> dict[str, tuple[list[bytes], str]]:
    up = os.path.relpath(canary, target).encode()  # ../../../../canary from the new root
    victim = bytes(canary / "victim")
    f, s, h = rawtar.member, rawtar.symlink, rawtar.hardlink
    return {
        "absolute path": ([f(bytes(canary / "new"), b"pwned")], "absolute path"),
        "dotdot": ([f(b"./" + up + b"/new", b"pwned")], "path contains '..'"),
        "symlink then write through it": (
            [s(b"./etc/evil", bytes(canary)), f(b"./etc/evil/victim", b"pwned")],
            "path passes through symlink 'etc/evil'",
        ),
        "relative symlink then write": (
            [s(b"./up", up), f(b"./up/new", b"pwned")],
            "path passes through symlink 'up'",
        ),
        "hard link to a symlink, then write through it": (
            [s(b"./s", bytes(canary)), h(b"./h", b"./s"), f(b"./h/victim", b"pwned")],
            "path passes through symlink 'h'",
        ),
        "hard link to an absolute target": (
            [h(b"./h", victim), f(b"./h", b"pwned")],
            "hard link target: absolute path",
        ),
        "hard link climbing out": (
            [h(b"./h", up + b"/victim"), f(b"./h", b"pwned")],
            "hard link target: path contains '..'",
        ),
        "pax path hiding a climb": (
            [rawtar.pax([(b"path", up + b"/new")]), f(b"./benign", b"pwned")],
            "path contains '..'",
        ),
    }


def _outside(base: Path) -> Manifest:
    """Everything in the scratch area except the test root (which holds the new volumes)."""
    return {k: v for k, v in record(base).items() if not k.startswith(b"root")}


CASES = list(_cases(Path("/c"), Path("/t")))


@pytest.mark.parametrize("unprivileged", [False, True], ids=["privileged", "unprivileged"])
@pytest.mark.parametrize("case", CASES)
def test_hostile_member_changes_nothing_outside(
    backups: Backups, vmid: int, case: str, unprivileged: bool
) -> None:
    canary = backups.work / "canary"
    canary.mkdir()
    (canary / "victim").write_text("original")
    os.chmod(canary, 0o777)  # writable for anyone: only the guard can keep it unchanged
    os.chmod(canary / "victim", 0o666)
    payload, reason = _cases(canary, paths.lxc_rootfs(vmid))[case]
    archive = hostile_archive(
        backups.dump / "vzdump-lxc-100-2024_01_02-03_04_05.tar.zst",
        UNPRIVILEGED if unprivileged else CONF,
        payload,
    )
    before = _outside(backups.root.parent)
    with pytest.raises(ArchiveError) as err:
        backups.restore(vmid, f"local:backup/{archive.name}")
    assert str(err.value).startswith(f"unable to restore CT {vmid} - unsafe archive member ")
    assert reason in str(err.value)
    assert diff(before, _outside(backups.root.parent)) == []
    assert (canary / "victim").read_text() == "original"
    assert leftovers(backups.root, vmid) == []


def test_device_node_in_unprivileged_restore(backups: Backups, vmid: int) -> None:
    payload = [
        rawtar.header(b"./etc/null", type=b"3", devmajor=1, devminor=3, mode=0o666),
        rawtar.header(b"./dev/sda", type=b"4", devmajor=8, devminor=0),  # excluded anyway
    ]
    archive = hostile_archive(
        backups.dump / "vzdump-lxc-100-2024_01_02-03_04_05.tar", UNPRIVILEGED, payload
    )
    volid = f"local:backup/{archive.name}"
    with pytest.raises(ArchiveError) as err:
        backups.restore(vmid, volid)
    assert str(err.value) == (
        f"unable to restore CT {vmid} - unsafe archive member './etc/null': "
        "device node not allowed in an unprivileged container"
    )
    assert leftovers(backups.root, vmid) == []
    conf = backups.restore(vmid, volid, ignore_unpack_errors=True)
    assert conf.unprivileged and store.exists(vmid)
    assert any("skipping device node './etc/null'" in line for line in backups.logs)


def test_privileged_restore_creates_device_nodes(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    payload = [rawtar.header(b"./etc/null", type=b"3", devmajor=1, devminor=3, mode=0o666)]
    archive = hostile_archive(
        backups.dump / "vzdump-lxc-100-2024_01_02-03_04_05.tar", CONF, payload
    )
    conf = backups.restore(vmid, f"local:backup/{archive.name}")
    rootfs = mounted_volume(volume_of(conf, "rootfs"))
    st = os.lstat(rootfs / "etc/null")
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_archive_fails_cleanly(backups: Backups, vmid: int, damage: str) -> None:
    tree = backups.tree()
    (tree / "big").write_bytes(os.urandom(3 << 20))  # incompressible, so the damage is in data
    archive = backups.archive(BASE_CONF, [(tree, "./")])
    path = backups.path(archive)
    data = path.read_bytes()
    middle = len(data) // 2
    if damage == "truncated":
        path.write_bytes(data[:middle])
    else:
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 4096])
            + data[middle + 4096 :]
        )
    with pytest.raises(CtkitError) as err:
        backups.restore(vmid, archive)
    text = str(err.value)
    assert text.startswith(f"unable to restore CT {vmid} - ")
    if damage == "truncated":
        assert text.endswith("unexpected end of archive")
    else:
        assert "zstd" in text
    assert leftovers(backups.root, vmid) == []
    assert not (backups.root / f"etc/pve/firewall/{vmid}.fw").exists()


def test_volume_size_beyond_the_file_system_limit(backups: Backups, vmid: int) -> None:
    conf = CONF.replace("size=128M", "size=100000T")  # more than the test root's ext4 holds
    result = pct("restore", str(vmid), backups.archive(conf))
    assert result.returncode == 9, result.stderr
    assert result.stderr.splitlines() == [
        f"unable to restore CT {vmid} - unable to allocate volume 'vm-{vmid}-disk-0.raw' on "
        "storage 'local' - File too large"
    ], result.stderr
    assert leftovers(backups.root, vmid) == []


def _nobody_can_open(path: Path) -> bool:
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    argv += ["sh", "-c", 'exec 3<>"$1"', "sh", str(path)]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def test_privileged_restore_is_out_of_host_users_reach(
    backups: Backups, new_vmid: Callable[[], int]
) -> None:
    # a device node of a loop device, writable by anyone, and a setuid-root shell
    payload = [
        rawtar.header(b"./etc/loop3", type=b"4", devmajor=7, devminor=3, mode=0o666),
        rawtar.member(b"./etc/rootsh", b"#!/bin/sh\n", mode=0o4755),
    ]
    conf = CONF.replace("vm-100-disk-0.raw,size=128M", "subvol-100-disk-0.subvol,size=0T")
    dump = backups.dump
    archive = hostile_archive(dump / "vzdump-lxc-100-2024_01_02-03_04_05.tar", conf, payload)
    restored = backups.restore(new_vmid(), f"local:backup/{archive.name}")
    assert not restored.unprivileged
    node = volume_of(restored) / "etc/loop3"
    assert os.lstat(node).st_mode & 0o777 == 0o666  # restored as in the archive ...
    assert not _nobody_can_open(node)  # ... but no host user reaches it
    assert not _nobody_can_open(volume_of(restored) / "etc/rootsh")
    assert os.stat(volume_of(restored).parent).st_mode & 0o777 == 0o700  # images/<vmid>
    # an unprivileged container's volumes stay reachable by its mapped root
    other = hostile_archive(
        dump / "vzdump-lxc-100-2024_01_02-03_04_06.tar", conf + "unprivileged: 1\n", []
    )
    restored = backups.restore(new_vmid(), f"local:backup/{other.name}")
    assert os.stat(volume_of(restored).parent).st_mode & 0o777 == 0o755
