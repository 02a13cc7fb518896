"""A second ctkit "host" for migration tests: a network namespace with its own address, an
sshd in it with keys made here, and a second CTKIT_ROOT used by the commands run over SSH.

    host netns  mg<id>a 198.18.X.1/30  <->  mg<id>b 198.18.X.2/30  netns ctkmig<id>
                                                             sshd, bridge mgbr<id>, pct (root 2)

sshd runs in its own mount namespace (a slave of the host's) where /sys belongs to the network
namespace; the target's containers and mounts live there.
The remote has storages ``local`` (dir) and ``fbt`` (btrfs on its own loop device).
The remote is registered as ``far`` in the source root's remotes config, with its host key
pinned. They are stopped over SSH before sshd ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pct.conftest import Pct, Result, run_pct

PCT = Path(sys.executable).parent / "pct"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@dataclass
class Far:
    """The remote host: its namespace, root, sshd and a way to run its pct directly."""

    name: str
    netns: str
    root: Path
    address: str
    bridge: str
    sshd: subprocess.Popen[bytes]
    identity: Path
    hostkey: Path

    def pct(self, *args: object, check: bool = True) -> Result:
        """The remote's pct, run through the same SSH connection the product uses."""
        argv = [
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", str(self.identity),
            f"root@{self.address}", "--",
            f"env CTKIT_ROOT={self.root} {PCT} " + " ".join(map(str, args)),
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and res.rc != 0:
            raise AssertionError(f"remote pct {args} failed ({res.rc}):\n{res.text}")
        return res

    def conf(self, vmid: int) -> Path:
        return self.root / f"etc/pve/lxc/{vmid}.conf"

    def kill_sshd(self) -> None:
        self.sshd.kill()
        self.sshd.wait()


def _wait_port(address: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, 22), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"sshd on {address} did not come up")


# Like ``ip netns exec``: a private mount namespace whose /sys shows the namespace's own network
# devices (LXC looks bridges up there) - but with the host's cgroup hierarchies carried over,
# which a fresh sysfs would hide.
SYSFS_FOR_NETNS = """
mkdir -p "$1"
mount --rbind /sys/fs/cgroup "$1"
mount -t sysfs sysfs /sys
mount --rbind "$1" /sys/fs/cgroup
exec /usr/sbin/sshd -D -e -f "$2"
"""


def start_sshd(netns: str, address: str, keys: Path) -> subprocess.Popen[bytes]:
    cfg = keys / "sshd_config"
    cfg.write_text(
        f"ListenAddress {address}\nPort 22\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nPidFile {keys / 'sshd.pid'}\nLogLevel ERROR\nMaxStartups 50\n"
        "MaxSessions 50\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-ec",
            SYSFS_FOR_NETNS,
            "sh",
            str(keys / "cg"),
            str(cfg),
        ],
        stderr=open(keys / "sshd.log", "ab"),  # noqa: SIM115 - the child keeps it open
    )
    _wait_port(address)
    return proc


@pytest.fixture
def far(ctroot: Path, tmp_path: Path, pct: Pct) -> Iterator[Far]:
    tag = secrets.token_hex(3)
    netns, outer, inner = f"ctkmig{tag}", f"mg{tag}a", f"mg{tag}b"
    bridge = f"mgbr{tag}"
    x = random.randint(200, 250)
    mine, theirs = f"198.18.{x}.1", f"198.18.{x}.2"
    keys = tmp_path / "far-keys"
    keys.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host"))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user"))
    shutil.copy(keys / "user.pub", keys / "authorized_keys")
    root2 = tmp_path / "far-root"
    (root2 / "etc/pve").mkdir(parents=True)
    sshd: subprocess.Popen[bytes] | None = None
    far: Far | None = None
    mnt = root2 / "mnt/fbt"
    try:
        _far_btrfs(tmp_path / "far-btrfs.img", mnt)
        add_storage(root2, "btrfs: fbt\n\tpath /mnt/fbt\n\tcontent rootdir,images\n")
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", netns)
        sh("ip", "addr", "add", f"{mine}/30", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        for cmd in (
            ["ip", "addr", "add", f"{theirs}/30", "dev", inner],
            ["ip", "link", "set", inner, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", bridge, "type", "bridge"],
            ["ip", "link", "set", bridge, "up"],
        ):
            sh("ip", "netns", "exec", netns, *cmd)
        sshd = start_sshd(netns, theirs, keys)
        far = Far("far", netns, root2, theirs, bridge, sshd, keys / "user", keys / "host.pub")
        run_pct(
            "remote", "add", "far", "--host", theirs, "--hostkey-file", keys / "host.pub",
            "--identity", keys / "user", "--command", PCT, "--root", root2,
        )  # fmt: skip
        yield far
    finally:
        if far is not None and far.sshd.poll() is None:
            _stop_remote_cts(far)
        if sshd is not None and sshd.poll() is None:
            sshd.kill()
            sshd.wait()
        # session processes that outlived sshd (a test cut the link) end with the namespace
        pids = sh("ip", "netns", "pids", netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        sh("ip", "netns", "del", netns, check=False)
        sh("ip", "link", "del", outer, check=False)
        _release_root(root2)
        sh("umount", str(mnt), check=False)


def _stop_remote_cts(far: Far) -> None:
    conf_dir = far.root / "etc/pve/lxc"
    for conf in sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []:
        res = far.pct("status", conf.stem, check=False)
        if "running" in res.out:
            far.pct("stop", conf.stem, "--skiplock", check=False)


def _release_root(root: Path) -> None:
    from shared.testbed import cleanup_root

    cleanup_root(root)


def _far_btrfs(image: Path, mnt: Path) -> None:
    """The remote's btrfs storage ``fbt``: its own file system on a loop device."""
    with open(image, "wb") as fh:
        fh.truncate(1 << 30)
    sh("mkfs.btrfs", "-q", str(image))
    mnt.mkdir(parents=True)
    sh("mount", "-o", "loop", str(image), str(mnt))


def add_storage(root: Path, section: str) -> None:
    cfg = root / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    old = (
        cfg.read_text()
        if cfg.exists()
        else ("dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n")
    )
    cfg.write_text(old.rstrip("\n") + "\n\n" + section)
