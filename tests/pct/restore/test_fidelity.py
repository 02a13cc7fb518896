"""Backup then restore reproduces the tree (content, modes, owners, times, links, holes, devices,
FIFOs, ACLs, xattrs, odd names), compared with the manifest helper; §9 case 39 (id shifting)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shared.archive.idmap import DEFAULT_UNPRIVILEGED
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
