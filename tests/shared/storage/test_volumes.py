"""Volume-id level operations: mounting and growing (allocation is in the plugin tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage import loop, volumes
from shared.storage.config import load_config

from .conftest import needs_root

VMID = 900000003
MIB = 1 << 20

pytestmark = needs_root


def test_mount_subvol_and_raw(ctroot: Path, target: Path) -> None:
    sub = volumes.alloc_volume(load_config().storage("local"), VMID, 0)
    raw = volumes.alloc_volume("local", VMID, 8 * MIB, root_uid=100000, root_gid=100000)
    with volumes.mounted_volume(sub, target) as handle:
        assert handle.format == "subvol" and handle.loopdev is None
        (target / "in-subvol").write_text("1")
    assert (ctroot / f"var/lib/vz/images/{VMID}/subvol-{VMID}-disk-0.subvol/in-subvol").exists()
    with volumes.mounted_volume(raw, target, options=["noexec"]) as handle:
        assert handle.format == "raw" and (target / "lost+found").is_dir()
        assert target.stat().st_uid == 100000
    assert not loop.is_mounted(target)
    image = ctroot / f"var/lib/vz/images/{VMID}/vm-{VMID}-disk-1.raw"
    assert loop.devices_for(image) == []


def test_mount_errors(ctroot: Path, target: Path) -> None:
    missing = f"local:{VMID}/vm-{VMID}-disk-0.raw"
    with pytest.raises(StorageError, match=rf"^volume '{missing}' does not exist$"):
        volumes.mount_volume(missing, target)
    with pytest.raises(StorageError, match=r"content type needs to be 'rootdir'"):
        volumes.mount_volume("local:vztmpl/a.tar.gz", target)
    sub = volumes.alloc_volume("local", VMID, 0)
    with pytest.raises(StorageError, match=r"snapshot feature is not available"):
        volumes.mount_volume(sub, target, snapshot="s1")
    assert not loop.is_mounted(target)


def test_grow_filesystem_offline(ctroot: Path) -> None:
    volid = volumes.alloc_volume("local", VMID, 8 * MIB)
    image = ctroot / f"var/lib/vz/images/{VMID}/vm-{VMID}-disk-0.raw"
    # re-format without MMP: e2fsck/resize2fs on an MMP file system wait ~11 s each
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    volumes.resize_volume(volid, 16 * MIB)
    volumes.grow_filesystem(volid)
    out = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert int(info["Block count"]) * int(info["Block size"]) == 16 * MIB
    volumes.grow_filesystem(volumes.alloc_volume("local", VMID, 0))  # subvol: nothing to do


def test_reserved_runs_with_the_chosen_name_before_the_volume_exists(ctroot: Path) -> None:
    """``reserved`` sees the volume id once the name is chosen and before the volume exists (a
    kill then leaves no volume that the caller's record lacks); a callback that fails leaves
    nothing."""
    seen: list[tuple[str, bool]] = []
    image = ctroot / f"var/lib/vz/images/{VMID}/vm-{VMID}-disk-0.raw"

    def note(volid: str) -> None:
        seen.append((volid, image.exists()))

    volid = volumes.alloc_volume("local", VMID, 8 * MIB, reserved=note)
    assert seen == [(volid, False)] and volid == f"local:{VMID}/vm-{VMID}-disk-0.raw"
    assert image.stat().st_size == 8 * MIB

    def refuse(volid: str) -> None:
        raise StorageError("no record")

    with pytest.raises(StorageError, match="no record"):
        volumes.alloc_volume("local", VMID, 8 * MIB, reserved=refuse)
    assert sorted(p.name for p in image.parent.iterdir()) == [image.name]
