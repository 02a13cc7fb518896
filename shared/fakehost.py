"""A second ctkit "host" on this machine, for the migration tests and benchmark.

    host netns  mg<id>a 198.18.X.1/30  <->  mg<id>b 198.18.X.2/30  netns ctkmig<id>
                                                        sshd, bridge mgbr<id>, pct (root 2)

A network namespace with its own address, an sshd in it with host and user keys made here, and
a second CTKIT_ROOT used by the commands run over that SSH connection, with storages ``local``
(dir) and ``fbt`` (btrfs on its own loop device). sshd runs in a private mount namespace (a
slave of the host's) whose /sys belongs to the network namespace, so the target's containers
and mounts live there; they are stopped over SSH before sshd ends. Like the rest of the test
bed, nothing here is used by the product.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .testbed import cleanup_root

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


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@dataclass
class FakeHost:
    """The remote host: its namespace, root, sshd, keys and its ``pct``."""

    netns: str
    root: Path
    address: str
    bridge: str
    sshd: subprocess.Popen[bytes]
    identity: Path
    hostkey: Path
    pct_path: Path

    def ssh_argv(self) -> list[str]:
        """Plain ssh to the host (no pinning: for the test bed's own commands only)."""
        return [
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", str(self.identity),
            f"root@{self.address}",
        ]  # fmt: skip

    def run_pct(self, *args: object, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The remote's pct, run over SSH in the remote's namespaces."""
        command = f"env CTKIT_ROOT={self.root} {self.pct_path} " + " ".join(map(str, args))
        argv = [*self.ssh_argv(), "--", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def conf(self, vmid: int) -> Path:
        return self.root / f"etc/pve/lxc/{vmid}.conf"


def _wait_port(address: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, 22), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"sshd on {address} did not come up")


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
    argv = ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation"]
    argv += ["slave", "sh", "-ec", SYSFS_FOR_NETNS, "sh", str(keys / "cg"), str(cfg)]
    with open(keys / "sshd.log", "ab") as log:
        proc = subprocess.Popen(argv, stderr=log)
    _wait_port(address)
    return proc


def add_storage(root: Path, section: str) -> None:
    cfg = root / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    old = (
        cfg.read_text()
        if cfg.exists()
        else ("dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n")
    )
    cfg.write_text(old.rstrip("\n") + "\n\n" + section)


def make_btrfs(image: Path, mnt: Path, size: int) -> None:
    """A btrfs on a sparse image file, mounted through a loop device."""
    with open(image, "wb") as fh:
        fh.truncate(size)
    sh("mkfs.btrfs", "-q", str(image))
    mnt.mkdir(parents=True)
    sh("mount", "-o", "loop", str(image), str(mnt))


def claim_subnet(dev: str) -> int:
    """Give ``dev`` 198.18.X.1/30 for an X no other test bed on this machine uses; the lock
    keeps two test beds set up at the same time from picking the same X."""
    lock = Path("/run/lock/ctkit-fakehost.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        used = sh("ip", "-4", "-o", "addr", "show").stdout
        free = [x for x in range(200, 251) if f" 198.18.{x}." not in used]
        if not free:
            raise RuntimeError("no free 198.18.200-250.0/30 subnet for a test host")
        x = random.choice(free)
        sh("ip", "addr", "add", f"198.18.{x}.1/30", "dev", dev)
    return x


@contextlib.contextmanager
def fake_host(workdir: Path, pct_path: Path, btrfs_size: int = 1 << 30) -> Iterator[FakeHost]:
    """Set the host up below ``workdir``; everything is torn down on the way out."""
    tag = secrets.token_hex(3)
    netns, outer, inner, bridge = f"ctkmig{tag}", f"mg{tag}a", f"mg{tag}b", f"mgbr{tag}"
    keys = workdir / "far-keys"
    keys.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host"))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "user"))
    shutil.copy(keys / "user.pub", keys / "authorized_keys")
    root = workdir / "far-root"
    (root / "etc/pve").mkdir(parents=True)
    mnt = root / "mnt/fbt"
    sshd: subprocess.Popen[bytes] | None = None
    host: FakeHost | None = None
    try:
        make_btrfs(workdir / "far-btrfs.img", mnt, btrfs_size)
        add_storage(root, "btrfs: fbt\n\tpath /mnt/fbt\n\tcontent rootdir,images\n")
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", netns)
        x = claim_subnet(outer)
        theirs = f"198.18.{x}.2"
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
        host = FakeHost(
            netns, root, theirs, bridge, sshd, keys / "user", keys / "host.pub", pct_path
        )
        yield host
    finally:
        if host is not None and sshd is not None and sshd.poll() is None:
            _stop_containers(host)
        if sshd is not None and sshd.poll() is None:
            sshd.kill()
            sshd.wait()
        # session processes that outlived sshd (a test cut the link) end with the namespace
        for pid in sh("ip", "netns", "pids", netns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        sh("ip", "netns", "del", netns, check=False)
        sh("ip", "link", "del", outer, check=False)
        cleanup_root(root)
        sh("umount", str(mnt), check=False)


def _stop_containers(host: FakeHost) -> None:
    conf_dir = host.root / "etc/pve/lxc"
    for conf in sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []:
        if "running" in host.run_pct("status", conf.stem).stdout:
            host.run_pct("stop", conf.stem, "--skiplock")
