"""pct.ops.provision.staged: the volumes that create, restore and clone fill. An image is
written back while the block fills it, so that the flush at its end finds little left."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops.provision import staged
from shared.ctconfig import store
from tests.pct.conftest import Pct
from tests.shared.test_writeback_fs import written_sectors

pytestmark = pytest.mark.lxc


def test_an_image_is_written_back_while_the_block_fills_it(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, ctroot: Path
) -> None:
    vmid = new_vmid()
    pct("create", vmid, busybox_template, "--rootfs", "local:0.2")
    with staged(store.load(vmid)) as tree:
        dev = next(handle.loopdev for handle in tree.handles if handle.loopdev is not None)
        before = written_sectors(dev)
        (tree.target / "data").write_bytes(os.urandom(32 << 20))
        # left to the kernel, data this fresh waits 30 s (dirty_expire) before it is written
        deadline = time.monotonic() + 10
        while written_sectors(dev) - before < (32 << 20) // 512:
            assert time.monotonic() < deadline, "not written back while the block ran"
            time.sleep(0.05)
    pct("destroy", vmid)


def test_create_refuses_a_volume_another_container_uses(
    pct: Pct, new_vmid: Callable[[], int], busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """The template would be extracted into the running container's root file system."""
    owner, vmid = new_vmid(), new_vmid()
    pct("create", owner, busybox_template, "--rootfs", "local:0")
    volid = conf_text(owner).split("rootfs: ", 1)[1].split(",")[0].strip()
    pct("start", owner)
    pct("exec", owner, "--", "rm", "/bin/ls")
    res = pct("create", vmid, busybox_template, "--rootfs", volid, check=False)
    assert (res.rc, res.err) == (
        6,
        f"unable to create CT {vmid} - volume '{volid}' is in use by CT {owner}\n",
    )
    assert pct("exec", owner, "--", "test", "-e", "/bin/ls", check=False).rc == 1
    assert not store.exists(vmid)
    pct("stop", owner)
    pct("destroy", owner)
