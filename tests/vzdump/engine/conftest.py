"""Fixtures for vzdump's real-container tests: containers made with the real ``pct``, the real
``vzdump`` console script run as a subprocess, btrfs and tiny ext4 file systems on loop devices
below the test root, and helpers that read archives and logs back from disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.storage.api import volume_path
from shared.testbed import stop_containers

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv/bin"
LOG_LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (INFO|WARN|ERROR): (.*)$")
HOOK = """#!/bin/bash
# test hook: record phase, arguments and environment; fail the phases listed in <dir>/fail
dir=$(dirname "$0")
freezer= state=
if [ -n "${3-}" ]; then
    state=$(lxc-info -P "$CTKIT_ROOT/var/lib/lxc" -n "$3" -sH 2>/dev/null)
    if [ -f "/sys/fs/cgroup/freezer/lxc/$3/freezer.state" ]; then
        freezer=$(cat "/sys/fs/cgroup/freezer/lxc/$3/freezer.state")
    fi
fi
echo "$* VMTYPE=${VMTYPE-} HOSTNAME=${HOSTNAME-} TARGET=${TARGET-} LOGFILE=${LOGFILE-}\
 DUMPDIR=${DUMPDIR-} STOREID=${STOREID-} STATE=$state FREEZER=$freezer" >> "$dir/calls"
if [ -n "${3-}" ] && [ -f "$CTKIT_ROOT/etc/pve/lxc/$3.conf" ]; then
    cp "$CTKIT_ROOT/etc/pve/lxc/$3.conf" "$dir/conf-$1"
fi
echo "hook says $1"
if [ -f "$dir/fail" ] && grep -qx -- "$1" "$dir/fail"; then exit 3; fi
exit 0
"""


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@dataclass
class Result:
    """One finished command: exit status, stdout (bytes) and stderr (text)."""

    rc: int
    out: bytes
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()

    def has(self, line: str) -> bool:
        return line in self.lines


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120,
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> Result:
    started = time.monotonic()
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, timeout=timeout, check=False, cwd=cwd
    )
    return Result(
        proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"),
        time.monotonic() - started,
    )  # fmt: skip


def vzdump(*args: str, timeout: float = 120) -> Result:
    """The real console script (CTKIT_ROOT comes from the environment the fixture set)."""
    return run([str(BIN / "vzdump"), *args], timeout=timeout)


def start_vzdump(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "vzdump"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def pct(*args: str) -> str:
    res = run([str(BIN / "pct"), *args])
    assert res.rc == 0, f"pct {' '.join(args)} failed ({res.rc}): {res.err}"
    return res.out.decode()


@dataclass
class CT:
    vmid: int
    root: Path
    unprivileged: bool

    @property
    def conf_path(self) -> Path:
        return self.root / f"etc/pve/lxc/{self.vmid}.conf"

    def conf(self) -> str:
        return self.conf_path.read_text()

    def conf_lines(self) -> list[str]:
        return self.conf().splitlines()

    def volume(self, key: str = "rootfs") -> Path:
        """The host path of a volume mount point (dir and btrfs storages: a directory)."""
        for line in self.conf_lines():
            if line.startswith(f"{key}: "):
                return volume_path(line.split(": ", 1)[1].split(",")[0])
        raise KeyError(key)

    def host_ids(self, uid: int = 0, gid: int = 0) -> tuple[int, int]:
        shift = 100000 if self.unprivileged else 0
        return uid + shift, gid + shift

    def write(self, rel: str, data: bytes = b"x", *, key: str = "rootfs", uid: int = 0) -> Path:
        """A file inside the container (on volume ``key``) owned by container uid/gid ``uid``."""
        base = self.volume(key)
        path = base / rel.lstrip("/")
        parents = [p for p in path.parents if base in p.parents]
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in parents:
            os.chown(parent, *self.host_ids())
        path.write_bytes(data)
        os.chown(path, *self.host_ids(uid, uid))
        return path

    def status(self) -> str:
        return pct("status", str(self.vmid)).strip()

    def running(self) -> bool:
        return self.status() == "status: running"

    def start(self) -> None:
        pct("start", str(self.vmid))

    def freezer_state(self) -> str:
        path = Path(f"/sys/fs/cgroup/freezer/lxc/{self.vmid}/freezer.state")
        if not path.exists():  # cgroup v2 host
            events = Path(f"/sys/fs/cgroup/lxc/{self.vmid}/cgroup.events").read_text()
            return "FROZEN" if "frozen 1" in events.splitlines() else "THAWED"
        return path.read_text().strip()


class Host:
    """The scratch root with a template, a dump directory and container factories."""

    def __init__(self, root: Path, template: Path, new_vmid: Callable[[], int]) -> None:
        self.root = root
        self.template = template
        self.new_vmid = new_vmid
        self.dumpdir = root / "dump"
        self.dumpdir.mkdir(exist_ok=True)

    def create(
        self,
        *,
        rootfs: str = "local:0",
        start: bool = False,
        unprivileged: bool = True,
        hostname: str | None = None,
        extra: Sequence[str] = (),
    ) -> CT:
        vmid = self.new_vmid()
        args = ["create", str(vmid), str(self.template), "--rootfs", rootfs]
        args += ["--unprivileged", "1" if unprivileged else "0"]
        args += ["--hostname", hostname or f"ct{vmid % 1000}", *extra]
        pct(*args)
        ct = CT(vmid, self.root, unprivileged)
        if start:
            ct.start()
        return ct

    def hook(self, *fail: str) -> Path:
        """An executable hook script that records its calls into ``<dir>/calls`` (one line per
        call: arguments, environment, the CT's LXC state and freezer state) and exits 3 in the
        phases ``fail``."""
        hookdir = self.root / "hook"
        hookdir.mkdir(exist_ok=True)
        script = hookdir / "hook.sh"
        script.write_text(HOOK)
        script.chmod(0o755)
        self.hook_fail(*fail)
        return script

    def hook_fail(self, *phases: str) -> None:
        """Make the hook fail in these phases from now on (and forget the recorded calls)."""
        (self.root / "hook/calls").unlink(missing_ok=True)
        (self.root / "hook/fail").write_text("".join(f"{p}\n" for p in phases))

    def hook_calls(self) -> list[dict[str, str]]:
        """Each call as {"args": "<phase> [<mode> <vmid>]", "VMTYPE": ..., ...}."""
        path = self.root / "hook/calls"
        calls = []
        for line in path.read_text().splitlines() if path.exists() else []:
            args, _sep, rest = line.partition(" VMTYPE=")
            call = {"args": args.strip()}
            for item in ("VMTYPE=" + rest).split(" "):
                key, _eq, value = item.partition("=")
                call[key] = value
            calls.append(call)
        return calls

    def storage_cfg(self, text: str) -> None:
        path = self.root / "etc/pve/storage.cfg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def vzdump_conf(self, text: str) -> None:
        (self.root / "etc").mkdir(exist_ok=True)
        (self.root / "etc/vzdump.conf").write_text(text)


@pytest.fixture
def host(ctroot: Path, debian_template: Path, new_vmid: Callable[[], int]) -> Iterator[Host]:
    yield Host(ctroot, debian_template, new_vmid)
    stop_containers(ctroot)


# --- loop file systems -------------------------------------------------------------------------


@contextlib.contextmanager
def loop_fs(root: Path, name: str, size: int, mkfs: Sequence[str]) -> Iterator[Path]:
    """A fresh file system of ``size`` bytes on a loop device, mounted at ``mnt``; unmounted and
    detached afterwards even when the test fails (containers on it must be stopped first)."""
    image, mnt = root / f"{name}.img", root / f"mnt/{name}"
    with open(image, "wb") as fh:
        fh.truncate(size)
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    mnt.mkdir(parents=True, exist_ok=True)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
        mnt.chmod(0o755)
        yield mnt
    finally:
        stop_containers(root)
        if _sh("umount", str(mnt)).returncode != 0:
            _sh("umount", "-l", str(mnt))
        _sh("losetup", "-d", dev)


BTRFS_CFG = (
    "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
    "btrfs: bt\n\tpath /mnt/btrfs\n\tcontent rootdir,images,backup\n"
)


@pytest.fixture
def btrfs(host: Host) -> Iterator[Path]:
    """Storage ``bt``: btrfs on a 1 GiB sparse loop image below the root (plus ``local``)."""
    with loop_fs(host.root, "btrfs", 1 << 30, ["mkfs.btrfs", "-q"]) as mnt:
        host.storage_cfg(BTRFS_CFG)
        yield mnt


@pytest.fixture
def tiny_fs(host: Host) -> Iterator[Path]:
    """A 6 MiB ext4 on a loop device below the root: a dump directory that runs out of space."""
    mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal"]
    with loop_fs(host.root, "tiny", 6 << 20, mkfs) as mnt:
        yield mnt


# --- reading results back --------------------------------------------------------------------


def archives(dumpdir: Path, vmid: int) -> list[Path]:
    """Final archives of one guest (not .dat, .log, .notes, .protected)."""
    pat = re.compile(rf"vzdump-lxc-{vmid}-.*\.(tar|tar\.(zst|gz|lzo))$")
    return sorted(p for p in dumpdir.iterdir() if pat.fullmatch(p.name))


def only_archive(dumpdir: Path, vmid: int) -> Path:
    found = archives(dumpdir, vmid)
    assert len(found) == 1, found
    return found[0]


def logfile(archive: Path) -> Path:
    name = re.sub(r"\.tar(\.(zst|gz|lzo))?$", ".log", archive.name)
    return archive.with_name(name)


def log_messages(path: Path) -> list[str]:
    """The ``LEVEL: message`` part of a guest log, after checking every line's timestamp."""
    out = []
    for line in path.read_text().splitlines():
        m = LOG_LINE_RE.match(line)
        assert m, f"log line without timestamp/level: {line!r}"
        out.append(f"{m.group(2)}: {m.group(3)}")
    return out


@dataclass
class Member:
    mode: str
    uid: int
    gid: int
    size: int
    name: str


def tar_list(archive: Path) -> list[Member]:
    """``tar -tvf --numeric-owner`` read back with GNU tar (decompressing by magic)."""
    out = subprocess.run(
        ["tar", "--list", "--verbose", "--numeric-owner", "-f", str(archive)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    members = []
    for line in out.splitlines():
        mode, owner, size, _day, _time, name = line.split(None, 5)
        name = name.split(" -> ")[0].split(" link to ")[0]
        uid, gid = owner.split("/")
        members.append(Member(mode, int(uid), int(gid), int(size) if size.isdigit() else 0, name))
    return members


def names(archive: Path) -> list[str]:
    return [m.name for m in tar_list(archive)]


def member_text(archive: Path, name: str) -> str:
    """The first occurrence of a member, as restore reads it."""
    return subprocess.run(
        ["tar", "-xOf", str(archive), name, "--occurrence"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def tar_of(vmid: int, timeout: float = 20.0) -> int:
    """Wait for the tar child that archives ``vmid``; returns its pid."""
    deadline = time.monotonic() + timeout
    marker = f"vzdump-lxc-{vmid}-".encode()
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if not argv or argv[0] != b"tar":
                    continue
                cwd = os.fsencode(os.readlink(entry / "cwd"))  # tar starts in the tmpdir
            except OSError:
                continue
            if marker in cwd:
                return int(entry.name)
        time.sleep(0.02)
    raise AssertionError(f"no tar process for {vmid} appeared")


def kill_tar_of(vmid: int, timeout: float = 20.0) -> int:
    """Wait for the tar child that archives ``vmid`` and SIGKILL it; returns its pid."""
    pid = tar_of(vmid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return pid


def wait_for_line(proc: subprocess.Popen[bytes], wanted: str, timeout: float = 30) -> list[str]:
    """Read a running vzdump's stderr until a line containing ``wanted``; returns lines read."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = proc.stderr.readline()
        if not raw:
            break
        seen.append(raw.decode(errors="replace").rstrip("\n"))
        if wanted in seen[-1]:
            return seen
    raise AssertionError(f"'{wanted}' not seen in: {seen}")


# an init that, halted, writes /halting and goes down once /go exists (within a minute): a
# test acts while the guest goes down without a clock
HALT_ON_GO_INIT = """#!/bin/sh
halt() {
    touch /halting
    n=0
    while [ ! -e /go ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
    exit 0
}
trap halt PWR
mount -t tmpfs tmpfs /run 2>/dev/null
while :; do sleep 1 & wait $!; done
"""


def loud_hook(path: Path, lines: int, length: int) -> Path:
    """A hook script that prints ``lines`` lines of ``length`` bytes at backup-start."""
    path.write_text(
        '#!/bin/sh\n[ "$1" = backup-start ] || exit 0\n'
        f"line=$(head -c {length} /dev/zero | tr '\\0' y)\nyes \"$line\" | head -n {lines}\n"
    )
    path.chmod(0o755)
    return path


def random_file(ct: CT, rel: str, size: int) -> Path:
    return ct.write(rel, os.urandom(size))
