"""``pct migrate`` / ``pct remote-migrate`` of real containers to a second host (issue 16)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

from .conftest import Far

pytestmark = pytest.mark.lxc


def checksum(pct_or_far: object, vmid: int, path: str) -> str:
    res = pct_or_far("exec", vmid, "--", "md5sum", path)  # type: ignore[operator]
    return str(res.out.split()[0])


def write_data(pct: Pct, vmid: int, path: str, mib: int = 8) -> str:
    pct("exec", vmid, "--", "dd", "if=/dev/urandom", f"of={path}", "bs=1M", f"count={mib}")
    return checksum(pct, vmid, path)


def test_stopped_ct_on_dir_storage_moves_and_leaves_the_source(
    pct: Pct, far: Far, vmid: int, busybox_template: Path, ctroot: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--hostname", "mover")
    marker = ctroot / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol/data.bin"
    marker.write_bytes(b"x" * 100000)
    digest = hashlib.sha256(marker.read_bytes()).hexdigest()
    res = pct("migrate", vmid, "far")
    assert "migration finished successfully" in res.out
    assert not (ctroot / f"etc/pve/lxc/{vmid}.conf").exists()
    assert not (ctroot / f"var/lib/vz/images/{vmid}").exists()
    conf = far.conf(vmid).read_text()
    assert "hostname: mover" in conf and "lock:" not in conf
    moved = far.root / f"var/lib/vz/images/{vmid}/subvol-{vmid}-disk-0.subvol/data.bin"
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == digest
    assert not list((far.root / "run/ctkit/migrate").glob("*.json"))
    assert not list((ctroot / "run/ctkit/migrate").glob("*.json"))
