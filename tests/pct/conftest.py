"""Fixtures for the real-container tests: the pct console script, storages, leak checks.

Every test gets its own CTKIT_ROOT (``ctroot``). After each test the product itself stops what
is still running (``pct stop --skiplock``), then the fixture asserts that nothing is left:
no mount and no loop device below the root, no LXC monitor of the root's containers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.fakehost import add_storage, make_btrfs
from shared.runtime import lxcapi
from shared.runtime.cgroups import CGROUP_ROOT, Layout, detect_layout
from shared.storage import loop
from shared.testbed import loops_below, mounts_below

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


def leftovers(root: Path, wait: float = 30.0) -> list[str]:
    """Mounts, loop devices and LXC monitors that belong to containers below ``root``.

    The kernel releases an autoclear loop device asynchronously after the last unmount (after
    the last mount namespace holding it is gone, when a process group was killed), so the
    check waits up to ``wait`` seconds for the list to become empty: a loaded host takes
    seconds, and what is really left stays for good.
    """
    deadline = time.monotonic() + wait
    while True:
        found = _leftovers_now(root)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def stop_by_itself(pct: PctRunner, vmid: int) -> None:
    """Start the CT and make its init exit (the test init exits on SIGUSR2): it stops by
    itself; returns as soon as LXC reports it stopped."""
    pct("start", vmid)
    pid = lxcapi.init_pid(vmid)
    assert pid is not None
    deadline = time.monotonic() + 20
    signalled = 0.0
    while lxcapi.is_running(vmid):
        assert time.monotonic() < deadline, f"CT {vmid} did not stop"
        # again and again: an init (a namespace's pid 1) ignores a signal that comes before
        # its shell set the trap, as on a loaded machine right after the start
        if time.monotonic() - signalled > 0.5:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
            signalled = time.monotonic()
        time.sleep(0.01)


def _leftovers_now(root: Path) -> list[str]:
    found = [f"mount {p}" for p in mounts_below(root)]
    found += [f"loop {d}" for d in loops_below(root)]
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
        if len(args) > 2 and args[0] == "clone":
            self.vmids.add(int(str(args[2])))  # checked even when the clone fails
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
    deadline = time.monotonic() + 30  # released asynchronously too
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
    mnt = ctroot / "mnt/bt"
    make_btrfs(ctroot / "btrfs.img", mnt, 16 << 30)  # sparse; room for default-sized volumes
    try:
        add_storage(ctroot, "btrfs: bt\n\tpath /mnt/bt\n\tcontent rootdir,images\n")
        yield "bt"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
        # its loop device goes a moment after the unmount (seconds, on a loaded machine):
        # not a leak of the test's command, which the check after it looks for
        loop.wait_unused(ctroot / "btrfs.img", 30)


@contextlib.contextmanager
def tmpfs_storage(ctroot: Path, name: str, size: str) -> Iterator[str]:
    """Dir storage ``name`` on a tmpfs of ``size`` below the test root."""
    mnt = ctroot / "mnt" / name
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", name, str(mnt)], check=True)
    try:
        add_storage(ctroot, f"dir: {name}\n\tpath /mnt/{name}\n\tcontent rootdir\n")
        yield name
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def tiny_storage(ctroot: Path, pct: Pct) -> Iterator[str]:
    """Dir storage ``tiny`` on a 256 KiB tmpfs: any real copy runs out of space."""
    with tmpfs_storage(ctroot, "tiny", "256k") as sid:
        yield sid


@pytest.fixture
def small_storage(ctroot: Path, pct: Pct) -> Iterator[str]:
    """Dir storage ``small`` on a 1 MiB tmpfs: room for a raw volume's sparse image and its
    empty file system, not for a container's files (writes into it fail only at write-back)."""
    with tmpfs_storage(ctroot, "small", "1m") as sid:
        yield sid


@pytest.fixture
def subid_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point ctkit's subuid/subgid check at scratch files (LXC keeps using /etc's)."""
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    uid.write_text("root:100000:65536\n")
    gid.write_text("root:100000:65536\n")
    monkeypatch.setenv("CTKIT_SUBUID", str(uid))
    monkeypatch.setenv("CTKIT_SUBGID", str(gid))
    return uid, gid


def tree_signature(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry's type, mode, owner, size, content digest, link target and xattrs."""
    sig: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel != "lost+found" and not rel.startswith("lost+found/"):
                sig[rel] = _entry_signature(path)
    return sig


def _entry_signature(path: Path) -> tuple[object, ...]:
    st = path.lstat()
    extra: object = None
    if stat.S_ISREG(st.st_mode):
        extra = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        extra = os.readlink(path)
    xattrs = tuple(
        sorted((k, os.getxattr(path, k, follow_symlinks=False))
               for k in os.listxattr(path, follow_symlinks=False))
    )  # fmt: skip
    # a directory's size and link count are the file system's business (btrfs: 1)
    isdir = stat.S_ISDIR(st.st_mode)
    size, nlink = (0, 0) if isdir else (st.st_size, st.st_nlink)
    return (st.st_mode, st.st_uid, st.st_gid, size, nlink, extra, xattrs)


@dataclass
class Containers:
    """Containers from the busybox template under the test's root, made, read and mounted
    the same way by every test that copies or moves their volumes."""

    pct: PctRunner
    root: Path
    template: Path
    new_vmid: Callable[[], int]

    def create(self, *options: object) -> int:
        """A new container; ``options`` as for ``pct create`` after the template."""
        vmid = self.new_vmid()
        self.pct("create", vmid, self.template, *options)
        return vmid

    def refused(self, *args: object) -> str:
        """``pct`` with ``args`` fails; its error output."""
        res = self.pct(*args, check=False)
        assert res.rc != 0, res.text
        return res.err

    def conf_path(self, vmid: int) -> Path:
        return self.root / f"etc/pve/lxc/{vmid}.conf"

    def conf(self, vmid: int) -> str:
        return self.conf_path(vmid).read_text()

    @contextlib.contextmanager
    def mounted(self, vmid: int) -> Iterator[Path]:
        """The container's root file system, mounted by ``pct mount`` for the block."""
        self.pct("mount", vmid)
        try:
            yield self.root / f"var/lib/lxc/{vmid}/rootfs"
        finally:
            self.pct("unmount", vmid)


@pytest.fixture
def cts(
    pct: PctRunner, ctroot: Path, busybox_template: Path, new_vmid: Callable[[], int]
) -> Containers:
    return Containers(pct, ctroot, busybox_template, new_vmid)


def copying(argv: list[str], images: Path) -> subprocess.Popen[str]:
    """Start ``pct argv`` (a copy throttled to last) in a session of its own; return once its
    new image in ``images`` has been copied into for a second (the copy tool runs: the image
    is made, formatted and on record before, which can take seconds on a loaded host)."""
    proc = subprocess.Popen(
        [str(PCT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (list(images.glob("vm-*")) and _copy_tools(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(1)  # the copy is under way (48 MiB at 8 MB/s: about 6 s)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc


def kill_mid_copy(argv: list[str], images: Path) -> None:
    """``pct argv`` killed with SIGKILL (no cleanup runs) two seconds into its copy: the pct
    process alone, as a ``kill -9`` of its pid or the OOM killer does. The copy it started
    (rsync, cp) ends with it at once: it would go on writing into a volume the next command
    frees, for as long as its bandwidth limit makes it last."""
    kill_alone(copying(argv, images))


def _copy_tools(pgid: int) -> list[str]:
    """The copy tools (rsync, cp) running in process group ``pgid``."""
    return [p for p in live_in_group(pgid) if p.split()[-1] in ("rsync", "cp")]


def kill_alone(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``pct`` (started in a session of its own) alone; every process it started must
    end with it at once. Its group goes in any case."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    try:
        # below what is left of the throttled copy (about 5 s): one left running must not end
        # by finishing it in time
        deadline = time.monotonic() + 3
        while left := live_in_group(proc.pid):
            assert time.monotonic() < deadline, f"{left} outlived the killed pct"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def live_in_group(pgid: int) -> list[str]:
    """The processes of group ``pgid`` still running (zombies wait for init: not counted)."""
    live = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                name, rest = (proc / "stat").read_text().rsplit(")", 1)
                fields = rest.split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    live.append(f"{proc.name} {name.split('(', 1)[1]}")
    return live


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waits for init: not counted)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    """Whether ``predicate`` holds within ``timeout`` seconds (asked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def live_pids(matches: Callable[[list[bytes]], bool]) -> list[int]:
    """The running processes whose command line (its arguments) ``matches``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if matches(args) and running(int(entry.name)):  # a zombie holds nothing
            found.append(int(entry.name))
    return found


def interrupt_mid_copy(argv: list[str], images: Path, how: str) -> str:
    """Run ``pct argv`` (a copy throttled to last), send SIGTERM to it or SIGINT to its
    process group (Ctrl-C) two seconds into the copy; its error output."""
    proc = copying(argv, images)
    try:
        if how == "TERM":
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted by signal"), err
    return err


def until_extracting(proc: subprocess.Popen[bytes]) -> None:
    """Read a pct create/restore's output until its extraction has begun."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        if raw.startswith(b"extracting archive"):
            return
    pytest.fail(f"pct ended before its extraction began (exit {proc.wait()})")


def wait_group_gone(pgid: int, timeout: float = 30) -> None:
    """Until every process of group ``pgid`` (tar, zstd, a btrfs child) has died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process group {pgid} still alive"
        time.sleep(0.05)


def wait_while_running(
    proc: subprocess.Popen[Any], ready: Callable[[], bool], what: str, timeout: float = 60
) -> None:
    """Until ``ready()``; the command ``proc`` must still run meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


def hold_post_stop(pct: PctRunner, ctroot: Path, vmid: int, marker: Path, seconds: int) -> None:
    """Give the CT a hookscript whose post-stop phase touches ``marker``, then takes
    ``seconds``: LXC's monitor lives on meanwhile, and so does whatever waits for it."""
    snippets = ctroot / "var/lib/vz/snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    hook = snippets / "hold.sh"
    hook.write_text(
        f'#!/bin/sh\n[ "$2" = post-stop ] && touch {marker} && sleep {seconds}\nexit 0\n'
    )
    hook.chmod(0o755)
    pct("set", vmid, "--hookscript", "local:snippets/hold.sh")


def sigkill_group_when(
    proc: subprocess.Popen[Any], ready: Callable[[], bool], what: str, timeout: float = 60
) -> None:
    """Wait until ``ready()``, then SIGKILL the whole process group of ``proc`` (started with
    ``start_new_session``: no cleanup runs) and wait until every process of it is gone."""
    try:
        wait_while_running(proc, ready, what, timeout)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_group_gone(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


HOLD_CALL = """
import fnmatch, sys, time
from shared.storage import btrfsplugin

name, pattern, after, marker = sys.argv[1:5]
real = getattr(btrfsplugin, name)

def held(*args, **kwargs):
    if fnmatch.fnmatch(" ".join(map(str, args)), pattern):
        if after == "1":
            real(*args, **kwargs)
        open(marker, "w").close()
        time.sleep(600)
    return real(*args, **kwargs)

setattr(btrfsplugin, name, held)
sys.argv = ["pct", *sys.argv[5:]]
from shared.entry import pct
pct()
"""


def holding_call(
    workdir: Path, name: str, when: str, *, after: bool = False
) -> tuple[list[str], Path]:
    """What :func:`holding_tool` does for a tool, for the system calls ctkit makes itself in
    ``shared.storage.btrfsplugin`` (``delete_subvolume``, ``snapshot_subvolume``): the start
    of a pct command line (its arguments follow) whose call ``name`` with arguments that
    match the glob ``when`` touches the marker and sleeps, having made the call first with
    ``after``; and the marker."""
    marker = workdir / f"holding-{name}"
    flag = "1" if after else "0"
    return [sys.executable, "-c", HOLD_CALL, name, when, flag, str(marker)], marker


def holding_tool(
    workdir: Path, tool: str, when: str, *, after: bool = False
) -> tuple[dict[str, str], Path]:
    """An environment whose PATH puts a stand-in for ``tool`` first, and the marker it touches:
    called with arguments that match the shell ``case`` pattern ``when``, the stand-in touches
    the marker and sleeps (holding the command there, for a kill), having run the real one
    first with ``after``; else it runs the real one."""
    real = shutil.which(tool)
    assert real is not None, f"{tool} is not installed"
    fakebin, marker = workdir / "bin", workdir / f"holding-{tool}"
    fakebin.mkdir(exist_ok=True)
    first = f'{real} "$@" || exit; ' if after else ""
    (fakebin / tool).write_text(
        f'#!/bin/sh\ncase "$*" in {when}) {first}touch {marker}; exec sleep 600;; esac\n'
        f'exec {real} "$@"\n'
    )
    (fakebin / tool).chmod(0o755)
    return dict(os.environ, PATH=f"{fakebin}:{os.environ['PATH']}"), marker
