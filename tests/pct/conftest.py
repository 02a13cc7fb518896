"""Fixtures for the real-container tests: the pct console script, storages, leak checks.

Every test gets its own CTKIT_ROOT (``ctroot``). After each test the product itself stops what
is still running (``pct stop --skiplock``), then the fixture asserts that nothing is left:
no mount and no loop device below the root, no LXC monitor of the root's containers.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.runtime import lxcapi
from shared.runtime.cgroups import CGROUP_ROOT, Layout, detect_layout
from tests.fixtures.cleanup import _loops_below, _mounts_below

PCT = Path(sys.executable).parent / "pct"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_pct(*args: object, check: bool = True, timeout: float = 120, stdin: str = "") -> Result:
    """Run ``pct`` with the test's CTKIT_ROOT (inherited from the environment)."""
    proc = subprocess.run(
        [str(PCT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )
    res = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and res.rc != 0:
        raise AssertionError(f"pct {' '.join(map(str, args))} failed ({res.rc}):\n{res.text}")
    return res


def leftovers(root: Path, wait: float = 3.0) -> list[str]:
    """Mounts, loop devices and LXC monitors that belong to containers below ``root``.

    The kernel releases an autoclear loop device asynchronously after the last unmount, so
    the check waits up to ``wait`` seconds for the list to become empty.
    """
    deadline = time.monotonic() + wait
    while True:
        found = _leftovers_now(root)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def _leftovers_now(root: Path) -> list[str]:
    found = [f"mount {p}" for p in _mounts_below(root)]
    found += [f"loop {d}" for d in _loops_below(root)]
    conf_dir = root / "etc/pve/lxc"
    if conf_dir.is_dir():
        for conf in conf_dir.glob("*.conf"):
            vmid = int(conf.stem)
            if lxcapi.monitor_alive(vmid):
                found.append(f"monitor of CT {vmid}")
    return found


def stale_cgroups(vmid: int) -> list[str]:
    """The CT's cgroups (payload and monitor) that still exist."""
    layout = detect_layout()
    base = CGROUP_ROOT if layout is Layout.V2 else CGROUP_ROOT / "memory"
    groups = (base / "lxc" / str(vmid), base / "lxc.monitor" / str(vmid))
    return [f"cgroup {g}" for g in groups if g.exists()]


class PctRunner:
    """``pct(...)``: runs the console script and remembers the containers it created."""

    def __init__(self) -> None:
        self.vmids: set[int] = set()

    def __call__(self, *args: object, **kw: Any) -> Result:
        if len(args) > 1 and args[0] == "create":
            self.vmids.add(int(str(args[1])))
        return run_pct(*args, **kw)


Pct = PctRunner


@pytest.fixture
def pct(ctroot: Path) -> Iterator[PctRunner]:
    """The pct console script under this test's root; checks the product's own cleanup after:
    whatever still runs is stopped with ``pct stop``, then nothing of it may be left."""
    runner = PctRunner()
    yield runner
    for vmid in sorted(runner.vmids):
        if lxcapi.is_running(vmid):
            run_pct("stop", vmid, "--skiplock", check=False)
    assert leftovers(ctroot) == []
    deadline = time.monotonic() + 3
    while (stale := [c for v in sorted(runner.vmids) for c in stale_cgroups(v)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert stale == []


@pytest.fixture
def conf_text(ctroot: Path) -> Callable[[int], str]:
    return lambda vmid: (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()


@pytest.fixture
def images(ctroot: Path) -> Callable[[int], Path]:
    """``images/<vmid>`` of storage ``local``."""
    return lambda vmid: ctroot / "var/lib/vz/images" / str(vmid)


@pytest.fixture
def local_tpl(ctroot: Path, busybox_template: Path) -> str:
    """The busybox template stored on ``local``; returns its volume id."""
    tdir = ctroot / "var/lib/vz/template/cache"
    tdir.mkdir(parents=True)
    shutil.copy(busybox_template, tdir / busybox_template.name)
    return f"local:vztmpl/{busybox_template.name}"


@pytest.fixture
def btrfs_storage(ctroot: Path, pct: Pct) -> Iterator[str]:
    """Storage ``bt``: a btrfs on a loop device, image and mount point below the test root.

    (Depends on ``pct`` so that it is unmounted before the leak check runs.)"""
    image = ctroot / "btrfs.img"
    with open(image, "wb") as fh:
        fh.truncate(16 << 30)  # sparse; room for default-sized volumes
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt = ctroot / "mnt/bt"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True, capture_output=True)
    cfg = ctroot / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
        "btrfs: bt\n\tpath /mnt/bt\n\tcontent rootdir,images\n"
    )
    try:
        yield "bt"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(mnt)], check=True, capture_output=True)


@pytest.fixture
def subid_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point ctkit's subuid/subgid check at scratch files (LXC keeps using /etc's)."""
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    uid.write_text("root:100000:65536\n")
    gid.write_text("root:100000:65536\n")
    monkeypatch.setenv("CTKIT_SUBUID", str(uid))
    monkeypatch.setenv("CTKIT_SUBGID", str(gid))
    return uid, gid
