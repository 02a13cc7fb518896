"""Advanced mode and stdin: the command line's layout (pct.md §4.3.4, §9 case 35)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.archive.vzdumpformat import RECORD_LIMIT, ReplayableStream, read_members
from shared.ctconfig import store
from shared.errors import CtkitError, StateError
from shared.storage.api import volume_path
from tests.pct.restore.conftest import BASE_CONF, Backups, images, leftovers

CONF_WITH_MPS = BASE_CONF + (
    "mp0: local:100/vm-100-disk-1.raw,mp=/data,backup=1,size=64M\nmp1: /srv/host,mp=/srv/share\n"
)


def _backup_with_mp0(backups: Backups) -> str:
    tree = backups.tree()
    (tree / "data").mkdir()
    (tree / "srv/data").mkdir(parents=True)
    (tree / "srv/data/kept").write_text("rootfs file below the new mp0\n")
    mp0 = backups.work / "mp0"
    (mp0 / "data").mkdir(parents=True)
    (mp0 / "data/hello").write_text("was on mp0\n")
    return backups.archive(CONF_WITH_MPS, [(tree, "./"), (mp0, "./data")])


def _volume(conf_value: str | None) -> Path:
    assert conf_value is not None
    return volume_path(conf_value.split(",")[0])


def test_case35_rootfs_only(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    archive = _backup_with_mp0(backups)
    conf = backups.restore(vmid, archive, params={"rootfs": "local:0.25"})
    assert conf.get_raw("rootfs") == f"local:{vmid}/vm-{vmid}-disk-0.raw,size=256M"
    assert "mp0" not in conf.values and "mp1" not in conf.values  # the backup's are ignored
    assert images(backups.root, vmid) == [f"vm-{vmid}-disk-0.raw"]
    rootfs = mounted_volume(_volume(conf.get_raw("rootfs")))
    assert (rootfs / "data/hello").read_text() == "was on mp0\n"
    assert conf.get_raw("memory") == "1024"  # the rest of the config is merged as usual


def test_given_mount_points_receive_their_files(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    archive = _backup_with_mp0(backups)
    conf = backups.restore(
        vmid, archive, params={"rootfs": "0.25", "mp0": "local:0.0625,mp=/srv/data,backup=1"}
    )
    assert (
        conf.get_raw("mp0") == f"local:{vmid}/vm-{vmid}-disk-1.raw,mp=/srv/data,backup=1,size=64M"
    )
    rootfs = mounted_volume(_volume(conf.get_raw("rootfs")))
    mp0 = mounted_volume(_volume(conf.get_raw("mp0")))
    assert (mp0 / "kept").read_text() == "rootfs file below the new mp0\n"
    assert (rootfs / "data/hello").exists() and not (rootfs / "srv/data/kept").exists()


def test_mount_points_need_rootfs(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF)
    with pytest.raises(
        CtkitError, match=r"^mount points configured, but 'rootfs' not set - aborting$"
    ):
        backups.restore(vmid, archive, params={"mp0": "local:1,mp=/x"})
    assert leftovers(backups.root, vmid) == []


def test_given_bind_mount_is_root_only(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF)
    with pytest.raises(CtkitError, match=r"Only root can pass arbitrary filesystem paths\.$"):
        backups.restore(
            vmid, archive, params={"rootfs": "0.25", "mp0": "/srv,mp=/srv"}, is_root=False
        )
    assert leftovers(backups.root, vmid) == []


def test_stdin_requires_rootfs(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF)
    with (
        open(backups.path(archive), "rb") as fh,
        pytest.raises(CtkitError, match=r"^restore from pipe requires rootfs parameter$"),
    ):
        backups.restore(vmid, "-", stdin=fh)
    assert not store.exists(vmid)


@pytest.mark.parametrize("compress", ["zst", "gz", "lzo", ""])
def test_stdin_restore_sniffs_and_merges(backups: Backups, vmid: int, compress: str) -> None:
    archive = backups.archive(BASE_CONF + "unprivileged: 1\n", compress=compress)
    with open(backups.path(archive), "rb") as fh:
        conf = backups.restore(vmid, "-", stdin=fh, params={"rootfs": "local:0.25"})
    assert backups.logs[0] == "recovering backed-up configuration from '-'"
    assert "extracting archive from STDIN" in backups.logs
    assert not any("now.." in line for line in backups.logs)
    assert conf.get_raw("hostname") == "backedup" and conf.unprivileged  # seen before extraction
    assert store.load(vmid).get_raw("rootfs") == f"local:{vmid}/vm-{vmid}-disk-0.raw,size=256M"


def test_stdin_without_config_at_the_start(backups: Backups, vmid: int) -> None:
    """A stream whose first 8 MiB hold no config: restored without one, with the banner."""
    import subprocess

    tree = backups.tree()
    (tree / "big").write_bytes(b"\0" * (RECORD_LIMIT + (1 << 20)))
    data = subprocess.run(["tar", "-C", str(tree), "-cf", "-", "."], capture_output=True).stdout
    conf = backups.restore(vmid, "-", stdin=io.BytesIO(data), params={"rootfs": "0.25"})
    assert "Backup archive does not contain any configuration" in backups.logs
    assert conf.get_raw("hostname") == f"CT{vmid}" and conf.get_raw("ostype") == "debian"


def test_replayable_stream_for_the_config_reader(backups: Backups) -> None:
    archive = backups.archive(BASE_CONF)
    with open(backups.path(archive), "rb") as fh:
        stream = ReplayableStream(fh)
        conf, _firewall = read_members(stream)
        whole = b"".join(iter(lambda: stream.read(1 << 16), b""))
    assert conf == BASE_CONF.encode()
    assert whole == backups.path(archive).read_bytes()


def _tree_names(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_volume_another_container_uses_is_refused(
    backups: Backups, new_vmid: Callable[[], int]
) -> None:
    """Given as ``--rootfs``, an existing volume is filled in place: another container's (a
    running one's too) took the archive's files, even from a restore that failed."""
    archive = backups.archive(BASE_CONF)
    owner, vmid = new_vmid(), new_vmid()
    volid = backups.restore(owner, archive, params={"rootfs": "local:0"}).get_raw("rootfs")
    assert volid is not None
    volid = volid.split(",")[0]
    (volume_path(volid) / "root/mine").write_text("the owner's\n")
    before = _tree_names(volume_path(volid))
    with pytest.raises(StateError, match=f"volume '{volid}' is in use by CT {owner}$"):
        backups.restore(vmid, archive, params={"rootfs": volid})
    assert _tree_names(volume_path(volid)) == before
    assert leftovers(backups.root, vmid) == []


def test_force_refuses_the_replaced_containers_own_volume(backups: Backups, vmid: int) -> None:
    """A failed ``--force`` restore leaves the old container as it was: its own volume,
    given back to the restore, would be filled in place before the commit."""
    archive = backups.archive(BASE_CONF)
    old = backups.restore(vmid, archive, params={"rootfs": "local:0"})
    volid = str(old.get_raw("rootfs")).split(",")[0]
    (volume_path(volid) / "etc/hostname").unlink()
    before = _tree_names(volume_path(volid))
    with pytest.raises(StateError, match=f"is in use by CT {vmid}$"):
        backups.restore(vmid, archive, force=True, params={"rootfs": volid})
    assert _tree_names(volume_path(volid)) == before
    assert store.load(vmid).values == old.values  # unlocked, unchanged


def test_an_existing_volume_nobody_uses_is_filled(
    backups: Backups, new_vmid: Callable[[], int]
) -> None:
    """Proxmox's advanced mode takes an existing volume too: one no config names is used."""
    archive = backups.archive(BASE_CONF)
    first, vmid = new_vmid(), new_vmid()
    made = backups.restore(first, archive, params={"rootfs": "local:0"})
    volid = str(made.get_raw("rootfs")).split(",")[0]
    (backups.root / f"etc/pve/lxc/{first}.conf").unlink()  # the volume is named by nothing
    conf = backups.restore(vmid, archive, params={"rootfs": volid})
    assert str(conf.get_raw("rootfs")).split(",")[0] == volid
    assert (volume_path(volid) / "bin/busybox").exists()
