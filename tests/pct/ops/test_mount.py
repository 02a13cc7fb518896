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
