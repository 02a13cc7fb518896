"""Benchmark ``pct clone`` against ``cp -a`` of the same tree (not a test).

    .venv/bin/python bench/clone_bench.py [--dir /var/tmp] [--size-mb 1000] [--reps 3]

Creates a container (busybox plus ``--size-mb`` of random files, unprivileged, directory
volume) and times side by side in one run: ``pct clone <vmid> <new> --full`` (the console
script: locks, a new volume, rsync, the clone fixups) vs ``cp -a`` of the volume's directory on
the same file system (target >= 0.9), and a linked clone of a template on a btrfs loop file
system (target < 1 s whatever the size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pct_bench import VMID, Root, make_template, shell  # noqa: E402
from bench.results import record  # noqa: E402

CLONE = VMID + 1


def bench_full(work: Path, root: Root, tpl: Path, reps: int) -> None:
    root.pct("create", VMID, tpl, "--rootfs", "local:0")
    source = root.path / f"var/lib/vz/images/{VMID}/subvol-{VMID}-disk-0.subvol"
    ours, ref = [], []
    try:
        for _ in range(reps):
            subprocess.run(["sync"], check=True)
            ref.append(shell(f"cp -a {source} {work}/cp-copy"))
            shutil.rmtree(work / "cp-copy")
            subprocess.run(["sync"], check=True)
            ours.append(root.pct("clone", VMID, CLONE, "--full"))
            root.destroy(CLONE)
    finally:
        root.destroy(VMID)
    best, mine = min(ref), min(ours)
    print(f"full clone  cp -a                                 {best:6.2f}s")
    print(f"            pct clone --full                      {mine:6.2f}s ratio {best / mine:.2f}")
    record("clone", "full clone (dir)", best / mine, ours_s=mine, reference_s=best, target=0.9)


def bench_linked(work: Path, root: Root, tpl: Path, size_mb: int) -> None:
    image, mnt = work / "btrfs.img", root.path / "mnt/bt"
    with open(image, "wb") as fh:
        fh.truncate(max(2 * size_mb, 512) << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    cfg = root.path / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
        "btrfs: bt\n\tpath /mnt/bt\n\tcontent rootdir,images\n"
    )
    try:
        root.pct("create", VMID, tpl, "--rootfs", "bt:0")
        root.pct("template", VMID)
        # the template's data just written: its writeback is the create's cost, not the
        # clone's (whose snapshot commit would otherwise wait for it), as for the full clone
        subprocess.run(["sync"], check=True)
        seconds = root.pct("clone", VMID, CLONE)
        print(f"linked clone on btrfs ({size_mb} MiB)           {seconds:6.2f}s (target < 1 s)")
        record("clone", "linked clone (btrfs)", None, ours_s=seconds, target_s=1.0)
    finally:
        root.destroy(CLONE)
        root.destroy(VMID)
        subprocess.run(["umount", str(mnt)], check=False)
        cfg.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ctkit-clone-bench-", dir=opts.dir))
    os.chmod(work, 0o755)
    root = Root(work / "root")
    root.path.mkdir()
    started = time.monotonic()
    try:
        tpl = make_template(work, opts.size_mb)
        bench_full(work, root, tpl, opts.reps)
        bench_linked(work, root, tpl, opts.size_mb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
