"""Benchmark ``pct migrate`` of a running container on btrfs (not a test).

    .venv/bin/python bench/migrate_bench.py [--dir /var/tmp] [--sizes 256,1024]

For each size: a privileged busybox container on a btrfs storage with that many MiB of random
data, a second host (:mod:`shared.fakehost`: a network namespace with its own sshd and ctkit
root, btrfs storage ``fbt``), then side by side in one run:

- throughput: the same data sent by hand, ``btrfs send <read-only snapshot> | ssh far
  btrfs receive <dir>`` with a plain ``ssh root@far`` (OpenSSH's default cipher, no
  compression: what a user types), vs the first pass of ``pct migrate`` (ratio = hand time /
  ctkit time for the same snapshot's data; target >= 0.9). Both end with the data on the
  target's disk: ctkit's receiver syncs before it confirms (the source may delete its copy
  next), so the hand pipeline ends with ``btrfs filesystem sync`` too. The hand pipeline runs
  before and after the migration (``remote-migrate`` keeps the source) and the mean counts, so
  a drift of the machine's load hits both sides alike. ctkit's pass is timed as it logs it: from
  its receiver's "ready" (the receivers connect while the snapshots are taken) to the target's
  "received and synced";
- downtime: what ``pct remote-migrate --restart`` reports (shutdown, incremental send, start
  on the target); the target is <= 2 s and independent of the size.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import record  # noqa: E402
from shared.fakehost import FakeHost, add_storage, fake_host, make_btrfs, sh  # noqa: E402
from shared.testbed import build_busybox_rootfs, cleanup_root, pack  # noqa: E402

PCT = Path(sys.executable).parent / "pct"
VMID = 900000950
FIRST_PASS = re.compile(r"first pass, running \(btrfs send\): ([\d.]+) MiB in ([\d.]+) s")
DOWNTIME = re.compile(r"migration downtime ([\d.]+) s")


def pct(*args: object) -> str:
    proc = subprocess.run([str(PCT), *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pct {' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def by_hand(subvol: Path, far: FakeHost) -> float:
    """``btrfs send | ssh root@far btrfs receive`` of a read-only snapshot of ``subvol``;
    seconds."""
    settle(subvol, far)  # what the migration before it deleted is freed first
    snap = subvol.with_name(subvol.name + "@bench")
    sh("btrfs", "subvolume", "snapshot", "-r", str(subvol), str(snap))
    dest = far.root / "mnt/fbt/bench-ref"
    dest.mkdir()
    try:
        start = time.monotonic()
        send = subprocess.Popen(["btrfs", "send", "-q", str(snap)], stdout=subprocess.PIPE)
        # synced like ctkit's receiver, which flushes before the sender may delete its copy
        ssh = ["ssh", "-F", "/dev/null", "-i", str(far.identity), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", f"root@{far.address}"]  # fmt: skip
        recv = [*ssh, f"btrfs receive -q {dest} && btrfs filesystem sync {dest}"]
        subprocess.run(recv, stdin=send.stdout, check=True)
        send.wait()
        return time.monotonic() - start
    finally:
        sh("btrfs", "subvolume", "delete", str(snap), check=False)
        for sub in dest.iterdir():
            sh("btrfs", "subvolume", "delete", str(sub), check=False)
        dest.rmdir()
        settle(subvol, far)


def settle(subvol: Path, far: FakeHost) -> None:
    """Wait until btrfs has freed deleted subvolumes on both sides: it does so in the
    background, and whatever runs next would pay for the other's cleanup (a transaction
    commit in the downtime waits for it)."""
    sh("btrfs", "subvolume", "sync", str(subvol.parent), check=False)
    sh("btrfs", "subvolume", "sync", str(far.root / "mnt/fbt"), check=False)


def one_size(base: Path, tpl: Path, mib: int) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"migrate-{mib}-", dir=base))
    root = work / "root"
    root.mkdir()
    os.environ["CTKIT_ROOT"] = str(root)
    size = (2 * mib + 1024) << 20
    mnt = root / "mnt/bt"
    make_btrfs(work / "bt.img", mnt, size)
    try:
        add_storage(root, "btrfs: bt\n\tpath /mnt/bt\n\tcontent rootdir,images\n")
        with fake_host(work, PCT, btrfs_size=size) as far:
            pct("remote", "add", "far", "--host", far.address, "--hostkey-file", far.hostkey,
                "--identity", far.identity, "--command", PCT, "--root", far.root)  # fmt: skip
            pct("create", VMID, tpl, "--rootfs", "bt:0", "--unprivileged", "0")
            pct("start", VMID)
            pct("exec", VMID, "--", "dd", "if=/dev/urandom", "of=/data.bin", "bs=1M",
                f"count={mib}")  # fmt: skip
            subvol = mnt / f"images/{VMID}/subvol-{VMID}-disk-0.subvol"
            before_s = by_hand(subvol, far)
            out = pct("remote-migrate", VMID, "far", "--restart", "--target-storage", "fbt",
                      "--target-bridge", "1", "--timeout", "5")  # fmt: skip
            far.run_pct("stop", VMID)
            hand_s = (before_s + by_hand(subvol, far)) / 2
    finally:
        cleanup_root(root)
        sh("umount", str(mnt), check=False)
    first = FIRST_PASS.search(out)
    down = DOWNTIME.search(out)
    assert first and down, out
    ours_mib, ours_s = float(first.group(1)), float(first.group(2))
    ratio = hand_s / ours_s
    print(f"{mib} MiB: by hand {hand_s:.2f} s, first pass {ours_s:.2f} s ({ours_mib:.0f} MiB), "
          f"ratio {ratio:.2f}; downtime {down.group(1)} s")  # fmt: skip
    record("migrate", f"btrfs send {mib} MiB", ratio, ours_s=ours_s, reference_s=hand_s,
           target=0.9)  # fmt: skip
    record("migrate", f"downtime {mib} MiB", None, downtime_s=float(down.group(1)), limit_s=2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/var/tmp", help="where to put the scratch files")
    parser.add_argument("--sizes", default="256,1024", help="container data sizes in MiB")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ctkit-migrate-bench-", dir=args.dir))
    try:
        tpl = pack(build_busybox_rootfs(base / "rootfs"), base / "busybox_1.0-1_amd64.tar.zst")
        for mib in (int(s) for s in args.sizes.split(",")):
            one_size(base, tpl, mib)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # GiBs of images; nothing is mounted any more


if __name__ == "__main__":
    main()
