"""``pct mount``: a privileged container's files, mounted on the host, are out of host users'
reach (they carry host ids: setuid-root files, device nodes); an unprivileged one's stay
reachable by its mapped root."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


def _nobody_can_read(path: Path) -> bool:
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "cat", str(path)]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize(("unprivileged", "mode"), [("0", 0o700), ("1", 0o755)])
def test_mounted_privileged_ct_is_hidden_from_host_users(
    pct: Pct,
    new_vmid: Callable[[], int],
    busybox_template: Path,
    ctroot: Path,
    unprivileged: str,
    mode: int,
) -> None:
    vmid = new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0.2", "--unprivileged", unprivileged)
    lxcdir = ctroot / f"var/lib/lxc/{vmid}"
    pct("mount", vmid)
    try:
        assert lxcdir.stat().st_mode & 0o777 == mode
        assert _nobody_can_read(lxcdir / "rootfs/etc/passwd") == (unprivileged == "1")
    finally:
        pct("unmount", vmid)
    pct("destroy", vmid)


def test_a_mount_point_that_cannot_be_made_fails_in_one_line(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    """A mount point below a read-only one (``ro=1``) whose directory is missing: a traceback
    of the OSError before; one line now, and nothing is left mounted."""
    vmid = new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0.2")
    pct("set", vmid, "--mp0", "local:0.1,mp=/data,ro=1", "--mp1", "local:0.1,mp=/data/sub")
    res = pct("mount", vmid, check=False)
    assert res.rc != 0 and "Traceback" not in res.err, res.err
    assert res.err.splitlines()[-1] == (
        "unable to create mount point '/data/sub' - Read-only file system"
    )
    assert str(ctroot / f"var/lib/lxc/{vmid}") not in Path("/proc/mounts").read_text()
    pct("destroy", vmid)
