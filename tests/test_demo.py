"""``make demo`` as an end-to-end test: every step of the main job must succeed.

Slow (the Debian root file system is made by debootstrap on the first run and cached in
``CTKIT_CACHE``, default /var/tmp/ctkit-cache, shared with later runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.lxc]

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(ctroot: Path, vmid: int) -> None:
    env = {**os.environ, "CTKIT_ROOT": str(ctroot / "demo"), "DEMO_VMID": str(vmid)}
    proc = subprocess.run(
        [sys.executable, "-m", "shared.demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for expected in (
        "==> [10/10] Done",
        "33554432 ",  # the blob's size in the backup's listing (vzdump browse)
        "one file back from the backup, identical to the original",
        "/srv/extra: a new volume, mounted in the running container without a restart",
        f"INFO: Starting CT {vmid + 1}",
        "the clone: the data of the snapshot, its own hostname",
        f"CT {vmid}: INFO: Finished Backup of VM {vmid}",
        f"CT {vmid + 1}: INFO: Finished Backup of VM {vmid + 1}",
        "migration finished successfully",
        f"on the second host: CT {vmid + 1} status: running; every checksum matches",
        "restored from the restic repository: every checksum matches",
        "offsite.env, offsite.key, offsite.key.json, offsite.pw (offsite.key: this node's own",
        "restic listing: ",
        "update successful",
        "checksum verified",
        "INFO: backup mode: suspend",
        "INFO: backup mode: snapshot",
        "INFO: create storage snapshot 'vzdump'",
        "pruned 1 backup(s) not covered by keep-retention policy",
        "data intact: every checksum matches",
        "removed the config of the unfinished pct restore",
        "==> Summary",
    ):
        assert expected in out, f"missing {expected!r} in:\n{out[-6000:]}"
    # both restores checked from inside: the snapshot-mode backup and the suspend-mode one
    assert out.count("data intact: every checksum matches") == 2, out[-6000:]
    # the demo cleans up after itself: nothing of its root is left mounted or running
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        assert str(ctroot / "demo") not in fh.read()
    assert not (ctroot / "demo").exists()
