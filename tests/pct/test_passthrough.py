"""Device passthrough (``devN``) on real containers: at start and hot-plugged into a running CT."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import paths
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / "loop.img"
    image.write_bytes(b"\0" * (1 << 20))
    dev = subprocess.run(["losetup", "--show", "-f", str(image)], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _inside(pct: Pct, vmid: int, path: str) -> str:
    """``major:minor mode uid:gid type`` of ``path`` as the container sees it."""
    fmt = "%t:%T %a %u:%g %F"
    return pct("exec", vmid, "--", "stat", "-c", fmt, path).out.strip()


def _expected(path: str) -> str:
    rdev = os.stat(path).st_rdev
    return f"{os.major(rdev):x}:{os.minor(rdev):x}"


@pytest.mark.parametrize("unprivileged", ["0", "1"])
def test_devices_at_start(
    pct: Pct, vmid: int, busybox_template: Path, loopdev: str, unprivileged: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", unprivileged,
        "--dev0", "/dev/zero,deny-write=1", "--dev1", "/dev/null,mode=0604,uid=5,gid=6",
        "--dev2", f"{loopdev},mode=0600")  # fmt: skip
    pct("start", vmid)
    zero = _inside(pct, vmid, "/dev/zero")
    assert zero == f"{_expected('/dev/zero')} 660 0:0 character special file"
    null = _inside(pct, vmid, "/dev/null")
    assert null == f"{_expected('/dev/null')} 604 5:6 character special file"
    loop = _inside(pct, vmid, loopdev)
    assert loop == f"{_expected(loopdev)} 600 0:0 block special file"
    # the nodes live on a tmpfs of the monitor's: the host's disk never holds one (a CT started
    # without devices had none, and the node was left there for every host user)
    on_disk = paths.lxc_dir(vmid) / "passthrough"
    assert not on_disk.exists() or not [p for p in on_disk.rglob("*") if not p.is_dir()]
    # readable, and the loop device's content comes through
    pct("exec", vmid, "--", "sh", "-c", f"head -c 4 /dev/zero && head -c 4 {loopdev}")
    # deny-write: the cgroup refuses writes to /dev/zero, /dev/null stays writable
    res = pct("exec", vmid, "--", "sh", "-c", "echo x > /dev/zero", check=False)
    assert res.rc != 0 and "not permitted" in res.err
    pct("exec", vmid, "--", "sh", "-c", "echo x > /dev/null")
    pct("stop", vmid)


@pytest.fixture
def scratch_node() -> Iterator[Path]:
    """A uniquely named character device node in the host's /dev (a copy of /dev/null)."""
    node = Path(f"/dev/ctkhp-{uuid.uuid4().hex[:8]}")
    os.mknod(node, 0o600 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
    try:
        yield node
    finally:
        node.unlink(missing_ok=True)


def test_missing_or_non_device_refuses_start(
    pct: Pct, vmid: int, busybox_template: Path, scratch_node: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--dev0", scratch_node)
    scratch_node.unlink()
    res = pct("start", vmid, check=False)
    assert res.rc != 0 and f"Device {scratch_node} does not exist" in res.err
    scratch_node.write_text("")
    res = pct("start", vmid, check=False)
    assert res.rc != 0 and f"{scratch_node} is not a device" in res.err
    assert pct("status", vmid).out.strip() == "status: stopped"


@pytest.mark.parametrize("unprivileged", ["0", "1"])
def test_device_hotplug(
    pct: Pct, vmid: int, busybox_template: Path, loopdev: str, unprivileged: str
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--unprivileged", unprivileged)
    pct("start", vmid)
    assert pct("exec", vmid, "--", "ls", loopdev, check=False).rc != 0
    pct("set", vmid, "--dev0", "/dev/zero,mode=0640,uid=3,gid=4,deny-write=1",
        "--dev1", f"{loopdev},mode=0600")  # fmt: skip
    zero = _inside(pct, vmid, "/dev/zero")
    assert zero == f"{_expected('/dev/zero')} 640 3:4 character special file"
    loop = _inside(pct, vmid, loopdev)
    assert loop == f"{_expected(loopdev)} 600 0:0 block special file"
    # the nodes live on a tmpfs of the monitor's: the host's disk never holds one (a CT started
    # without devices had none, and the node was left there for every host user)
    on_disk = paths.lxc_dir(vmid) / "passthrough"
    assert not on_disk.exists() or not [p for p in on_disk.rglob("*") if not p.is_dir()]
    pct("exec", vmid, "--", "sh", "-c", f"head -c 4 /dev/zero && head -c 4 {loopdev}")
    res = pct("exec", vmid, "--", "sh", "-c", "echo x > /dev/zero", check=False)
    assert res.rc != 0 and "not permitted" in res.err
    pending = pct("pending", vmid).out
    assert "cur dev0: /dev/zero,deny-write=1,gid=4,mode=0640,uid=3" in pending
    assert "new dev" not in pending
    # replacing an existing device waits for the next start
    pct("set", vmid, "--dev0", "/dev/full")
    assert "new dev0: /dev/full" in pct("pending", vmid).out
    pct("stop", vmid)
    pct("start", vmid)
    assert _inside(pct, vmid, "/dev/full").startswith(_expected("/dev/full"))
    pct("stop", vmid)


def test_device_hotplug_refusals(
    pct: Pct, vmid: int, busybox_template: Path, scratch_node: Path
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    res = pct("set", vmid, "--dev0", "/dev/ctkhp-absent", check=False)
    assert res.rc != 0 and "Device /dev/ctkhp-absent does not exist" in res.err
    scratch_node.unlink()
    scratch_node.write_text("")
    res = pct("set", vmid, "--dev0", str(scratch_node), check=False)
    assert res.rc != 0 and f"{scratch_node} is not a device" in res.err
    assert "dev0" not in pct("config", vmid).out
    pct("stop", vmid)
