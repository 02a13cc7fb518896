"""pct and vzdump under a hardening umask (027, 077) that root's shell may have."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import Containers

VZDUMP = Path(sys.executable).parent / "vzdump"


def test_an_unprivileged_ct_lives_under_umask_077(
    cts: Containers, umask: Callable[[int], int]
) -> None:
    """Created, started, backed up and restored by commands run with root's umask 077 (children
    inherit it): before, /var/lib/lxc/<vmid> came out 0700 and tar, as the CT's root, could not
    reach the new root file system. Files keep what the mask withholds: the archive is 0600."""
    umask(0o077)  # after the test's root was made, as root's shell would have it
    vmid = cts.create("--rootfs", "local:0")
    cts.pct("start", vmid)
    cts.pct("exec", vmid, "--", "sh", "-c", "echo kept > /root/marker")
    lxcdir = cts.root / "var/lib/lxc"
    assert stat.S_IMODE(lxcdir.stat().st_mode) == 0o711
    res = subprocess.run(
        [str(VZDUMP), str(vmid), "--mode", "suspend"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    cts.pct("stop", vmid)
    (archive,) = (cts.root / "var/lib/vz/dump").glob(f"vzdump-lxc-{vmid}-*.tar")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    restored = cts.new_vmid()
    cts.pct.vmids.add(restored)
    cts.pct("restore", restored, archive)
    cts.pct("start", restored)
    assert cts.pct("exec", restored, "--", "cat", "/root/marker").out == "kept\n"
    cts.pct("stop", restored)
