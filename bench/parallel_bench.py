"""Benchmark a parallel backup job: 8 small running containers, one worker vs two (and the peak
RSS with four), side by side in one run (not part of the test suite).

    .venv/bin/python bench/parallel_bench.py [--dir /var/tmp] [--guest-mb 8] [--reps 2]
                                             [--guests 8]

Builds a scratch CTKIT_ROOT below ``--dir`` with ``--guests`` unprivileged busybox containers
on dir volumes and as many on a btrfs loop file system, each with ``--guest-mb`` MiB of mixed
data, starts them, and times two jobs with the real console script for N = 1 and 2 workers,
interleaved, best of ``--reps``:

- suspend mode: ``vzdump <the dir CTs> --mode suspend --compress zstd --parallel N``;
- snapshot mode on btrfs: ``vzdump <the btrfs CTs> --mode snapshot --compress zstd
  --parallel N``.

Ratio = time with one worker / time with two (target: two workers take <= 0.65x the time, i.e.
a ratio >= 1.54). Then one suspend run with four workers gives the peak RSS of the vzdump
process (target < 200 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import results  # noqa: E402
from bench.vzdump_bench import Root, btrfs_storage, generate, scratch_root  # noqa: E402
from shared.testbed import build_busybox_rootfs, pack  # noqa: E402

FIRST_VMID = 900000960
TARGET = 1 / 0.65


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--guest-mb", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--guests", type=int, default=8)
    opts = parser.parse_args()
    with scratch_root("ctkit-parallel-bench-", opts.dir) as (root, work):
        bench(root, work, opts)


def job(root: Root, work: Path, name: str, vmids: list[int], mode: str, workers: int) -> float:
    dump = work / f"dump-{name}-{workers}"
    dump.mkdir()
    seconds, _hwm, _maxrss, _err = root.vzdump(
        *vmids, "--mode", mode, "--compress", "zstd", "--dumpdir", dump, "--parallel", workers
    )
    shutil.rmtree(dump)
    print(f"  {name}, {workers} worker(s): {seconds:.2f}s")
    return seconds


def bench(root: Root, work: Path, opts: argparse.Namespace) -> None:
    tpl = pack(build_busybox_rootfs(work / "tpl"), work / "busybox_1.0-1_amd64.tar.zst")
    (root.path / "etc/pve").mkdir(parents=True, exist_ok=True)
    btrfs_storage(root, opts.guests * opts.guest_mb * 4)
    jobs = {
        "suspend": [FIRST_VMID + i for i in range(opts.guests)],
        "snapshot": [FIRST_VMID + opts.guests + i for i in range(opts.guests)],
    }
    for name, storage in (("suspend", "local"), ("snapshot", "bt")):
        for i, vmid in enumerate(jobs[name]):
            root.pct("create", vmid, tpl, "--rootfs", f"{storage}:0")
            generate(root.rootfs(vmid), opts.guest_mb, seed=i + 1)
            root.pct("start", vmid)
    print(f"host: {os.cpu_count()} CPUs; {opts.guests} running CTs a job, {opts.guest_mb} MiB each")
    best: dict[tuple[str, int], float] = {}
    for _rep in range(opts.reps):
        for name, vmids in jobs.items():
            for workers in (1, 2):
                seconds = job(root, work, name, vmids, name, workers)
                best[name, workers] = min(best.get((name, workers), seconds), seconds)
    dump = work / "dump-rss"
    dump.mkdir()
    seconds4, hwm, _maxrss, _err = root.vzdump(
        *jobs["suspend"], "--mode", "suspend", "--compress", "zstd", "--dumpdir", dump,
        "--parallel", 4,
    )  # fmt: skip
    print(f"4 workers (suspend): {seconds4:.2f}s, peak RSS of vzdump {hwm / 1024:.1f} MiB "
          "(target < 200)")  # fmt: skip
    for name in jobs:
        one, two = best[name, 1], best[name, 2]
        ratio = one / two
        print(f"{name}: 2 workers {two:.2f}s vs 1 worker {one:.2f}s -> ratio {ratio:.2f} "
              f"({two / one:.2f}x the time; target <= 0.65x)")  # fmt: skip
        extra = {"four_workers_s": round(seconds4, 3), "four_workers_rss_mib": round(hwm / 1024, 1)}
        results.record(
            "parallel", f"{name}-{opts.guests}ct-2-workers", ratio, target=round(TARGET, 3),
            one_worker_s=round(one, 3), two_workers_s=round(two, 3),
            **(extra if name == "suspend" else {}),
        )  # fmt: skip


if __name__ == "__main__":
    main()
