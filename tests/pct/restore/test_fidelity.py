"""Backup then restore reproduces the tree (content, modes, owners, times, links, holes, devices,
FIFOs, ACLs, xattrs, odd names), compared with the manifest helper; §9 case 39 (id shifting).

The directories that exist before extraction (the root, a volume mount point's root, the
directories on the way to a mount point) get their backed-up attributes too."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from shared.archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry, usernsexec_argv
from shared.errors import ArchiveError
from shared.storage.api import volume_path
from tests.pct.restore.conftest import Backups, leftovers
from tests.shared.archive.manifest import Manifest, diff, record, shifted, without
from tests.shared.archive.trees import build_fidelity_tree

RAW_CONF = (
    "hostname: fid\nmemory: 256\nostype: unmanaged\nrootfs: local:100/vm-100-disk-0.raw,size=128M\n"
)
SUBVOL_CONF = (
    "hostname: fid\nmemory: 256\nostype: unmanaged\n"
    "rootfs: local:100/subvol-100-disk-0.subvol,size=0T\nunprivileged: 1\n"
)


def _tree(root: Path) -> Manifest:
    """The manifest without what belongs to the file system rather than the container."""
    return {k: v for k, v in record(root).items() if not k.startswith(b"lost+found")}


def _rootfs(conf_rootfs: str | None, mount: Callable[[Path], Path]) -> Path:
    assert conf_rootfs is not None
    path = volume_path(conf_rootfs.split(",")[0])
    return mount(path) if path.is_file() else path


def test_privileged_container_is_reproduced_exactly(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "priv"
    build_fidelity_tree(tree, devices=True)
    expected = _tree(tree)
    assert {"chr", "blk", "fifo", "symlink"} <= {e["type"] for e in expected.values()}
    conf = backups.restore(vmid, backups.archive(RAW_CONF, [(tree, "./")]))
    assert diff(expected, _tree(_rootfs(conf.get_raw("rootfs"), mounted_volume))) == []


def test_unprivileged_container_is_reproduced_exactly(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "unpriv"
    build_fidelity_tree(tree, idmap=DEFAULT_UNPRIVILEGED, devices=False)
    expected = _tree(tree)
    assert expected[b"dir/file"]["uid"] == 101000  # built inside the user namespace
    archive = backups.archive(SUBVOL_CONF, [(tree, "./")], idmap=DEFAULT_UNPRIVILEGED)
    conf = backups.restore(vmid, archive)
    assert conf.unprivileged
    assert conf.get_raw("rootfs") == f"local:{vmid}/subvol-{vmid}-disk-0.subvol,size=0T"
    assert diff(expected, _tree(_rootfs(conf.get_raw("rootfs"), mounted_volume))) == []


def test_case39_privileged_backup_restored_unprivileged(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "priv"
    build_fidelity_tree(tree, devices=True)
    archive = backups.archive(RAW_CONF, [(tree, "./")])
    with pytest.raises(ArchiveError, match="device node not allowed in an unprivileged container"):
        backups.restore(vmid, archive, unprivileged=True)
    assert leftovers(backups.root, vmid) == []

    conf = backups.restore(vmid, archive, unprivileged=True, ignore_unpack_errors=True)
    assert conf.unprivileged
    assert sum("skipping device node" in line for line in backups.logs) == 2
    expected = without(shifted(_tree(tree), 100000, 100000), "chr", "blk")
    assert diff(expected, _tree(_rootfs(conf.get_raw("rootfs"), mounted_volume))) == []


def test_unprivileged_backup_restored_privileged(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "unpriv"
    build_fidelity_tree(tree, idmap=DEFAULT_UNPRIVILEGED, devices=False)
    archive = backups.archive(
        RAW_CONF + "unprivileged: 1\n", [(tree, "./")], idmap=DEFAULT_UNPRIVILEGED
    )
    conf = backups.restore(vmid, archive, unprivileged=False)
    assert not conf.unprivileged
    # container ids land unshifted on the host; v3 capabilities read back as v2
    expected = shifted(_tree(tree), -100000, -100000)
    for entry in expected.values():
        caps = entry.get("xattrs", {})
        if "security.capability" in caps:
            value = caps["security.capability"]
            magic = int.from_bytes(value[:4], "little") & 0x00FFFFFF | 0x02000000
            caps["security.capability"] = magic.to_bytes(4, "little") + value[4:20]
    actual = _tree(_rootfs(conf.get_raw("rootfs"), mounted_volume))
    assert diff(expected, actual) == []


# --- directories that exist before extraction -------------------------------------------------

# The root of a mount point's volume, set up with attributes no new volume has (owner, setgid
# mode, access and default ACLs, an xattr, an old mtime); a subdirectory and a file below it.
_MP_SCRIPT = r"""
set -e
mkdir -p "$1"
cd "$1"
mkdir sub
echo 'on the volume' > sub/file
chown 1000:100 . sub/file
setfacl -m u:1000:rwx,g:33:rx .
setfacl -d -m u:1000:rwx,g:100:rx .
chmod 2770 .
setfattr -n user.mountpoint -v "$1" .
touch -d '2022-06-07 08:09:10.25' sub/file sub .
"""

# A directory on the way to a mount point: ensure_dir makes it (0755, now) before extraction.
_PARENT_SCRIPT = r"""
set -e
mkdir -p "$1"
chown 0:33 "$1"
chmod 0751 "$1"
setfattr -n user.parent -v "$1" "$1"
touch -d '2017-08-09 10:11:12.5' "$1" .
"""


def _run_as_container(script: str, cwd: Path, rel: str, idmap: Sequence[IdMapEntry] | None) -> None:
    argv = [*usernsexec_argv(idmap), "sh", "-c", f'cd "$0"\n{script}', str(cwd), rel]
    subprocess.run(argv, check=True)


def _mp_tree(parent: Path, mp_path: str, idmap: Sequence[IdMapEntry] | None) -> Path:
    """``parent`` with the backed-up mount point at ``parent/<mp_path>``, as vzdump sees it."""
    parent.mkdir(mode=0o755)
    if idmap:
        os.chown(parent, 100000, 100000)
    _run_as_container(_MP_SCRIPT, parent, mp_path.strip("/"), idmap)
    return parent


def _volume_tree(manifest: Manifest, at: bytes) -> Manifest:
    """A volume's manifest as seen at its mount point ``at``."""
    return {(at if k == b"." else at + b"/" + k): v for k, v in manifest.items()}


def _container_view(root: Manifest, volumes: dict[bytes, Manifest]) -> Manifest:
    """The root volume with each ``at -> volume`` mounted over it (hiding what was below)."""
    out = dict(root)
    for at, volume in volumes.items():
        out = {k: v for k, v in out.items() if k != at and not k.startswith(at + b"/")}
        out.update(_volume_tree(volume, at))
    return out


def test_privileged_mount_point_root_and_parent_keep_their_attributes(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "priv"
    build_fidelity_tree(tree, devices=True)
    _run_as_container(_PARENT_SCRIPT, tree, "srv", None)
    mp0 = _mp_tree(backups.work / "mp0", "/srv/data", None)
    expected = _container_view(_tree(tree), {b"srv/data": _tree(mp0 / "srv/data")})
    assert expected[b"srv/data"]["mode"] == 0o2770 and expected[b"srv/data"]["uid"] == 1000
    assert expected[b"srv"]["mode"] == 0o751
    conf_text = RAW_CONF + "mp0: local:100/vm-100-disk-1.raw,mp=/srv/data,backup=1,size=64M\n"
    archive = backups.archive(conf_text, [(tree, "./"), (mp0, "./srv/data")])

    conf = backups.restore(vmid, archive)
    rootfs = _rootfs(conf.get_raw("rootfs"), mounted_volume)
    volume = _rootfs(conf.get_raw("mp0"), mounted_volume)
    actual = _container_view(_tree(rootfs), {b"srv/data": _tree(volume)})
    assert diff(expected, actual) == []
    assert not any(line.startswith("WARN") for line in backups.logs)


def test_unprivileged_mount_point_root_keeps_its_attributes(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    tree = backups.work / "unpriv"
    build_fidelity_tree(tree, idmap=DEFAULT_UNPRIVILEGED, devices=False)
    mp0 = _mp_tree(backups.work / "mp0", "/data", DEFAULT_UNPRIVILEGED)
    expected = _container_view(_tree(tree), {b"data": _tree(mp0 / "data")})
    assert expected[b"data"]["uid"] == 101000  # built inside the user namespace
    assert expected[b"data"]["acl_default"]
    conf_text = SUBVOL_CONF + "mp0: local:100/subvol-100-disk-1.subvol,mp=/data,size=0T\n"
    archive = backups.archive(
        conf_text, [(tree, "./"), (mp0, "./data")], idmap=DEFAULT_UNPRIVILEGED
    )

    conf = backups.restore(vmid, archive)
    assert conf.unprivileged
    assert conf.get_raw("mp0") == f"local:{vmid}/subvol-{vmid}-disk-1.subvol,mp=/data,size=0T"
    rootfs = _rootfs(conf.get_raw("rootfs"), mounted_volume)
    volume = _rootfs(conf.get_raw("mp0"), mounted_volume)
    actual = _container_view(_tree(rootfs), {b"data": _tree(volume)})
    assert diff(expected, actual) == []
    assert not any(line.startswith("WARN") for line in backups.logs)
