"""The second host of the migration tests (:mod:`shared.fakehost`), registered as remote
``far`` in the test's root with its host key pinned."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.fakehost import FakeHost, fake_host, sh
from tests.pct.conftest import Pct, Result, run_pct

PCT = Path(sys.executable).parent / "pct"

__all__ = ["PCT", "Far", "sh"]


class Far(FakeHost):
    name = "far"

    def pct(self, *args: object, check: bool = True) -> Result:
        """The remote's pct, run through SSH in the remote's namespaces."""
        proc = self.run_pct(*args)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and res.rc != 0:
            raise AssertionError(f"remote pct {args} failed ({res.rc}):\n{res.text}")
        return res


@pytest.fixture
def far(ctroot: Path, tmp_path: Path, pct: Pct) -> Iterator[Far]:
    with fake_host(tmp_path, PCT) as host:
        far = Far(**host.__dict__)
        run_pct(
            "remote", "add", "far", "--host", far.address, "--hostkey-file", far.hostkey,
            "--identity", far.identity, "--command", PCT, "--root", far.root,
        )  # fmt: skip
        yield far


@pytest.fixture
def running_ct(pct: Pct, vmid: int, busybox_template: Path, btrfs_storage: str) -> tuple[int, str]:
    """A running privileged container on btrfs with 40 MiB of data; its VMID and checksum."""
    from .test_migrate import write_data

    pct("create", vmid, busybox_template, "--rootfs", f"{btrfs_storage}:0", "--unprivileged", "0")
    pct("start", vmid)
    return vmid, write_data(pct, vmid, "/data.bin", mib=40)
