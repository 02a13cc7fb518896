"""Benchmark a parallel backup job: 8 small running containers, suspend mode, one worker vs
two (and the peak RSS with four), side by side in one run (not part of the test suite).

    .venv/bin/python bench/parallel_bench.py [--dir /var/tmp] [--guest-mb 8] [--reps 2]
                                             [--guests 8]

Builds a scratch CTKIT_ROOT below ``--dir`` with ``--guests`` unprivileged busybox containers
on dir volumes, each with ``--guest-mb`` MiB of mixed data, starts them, and times
``vzdump <all> --mode suspend --compress zstd --parallel N`` (the real console script) for N =
1 and 2, interleaved, best of ``--reps``. Ratio = time with one worker / time with two (target:
two workers take <= 0.65x the time, i.e. a ratio >= 1.54). Then one run with four workers gives
the peak RSS of the vzdump process (target < 200 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import results  # noqa: E402
from bench.vzdump_bench import Root, generate  # noqa: E402
from shared.testbed import build_busybox_rootfs, cleanup_root, pack  # noqa: E402

FIRST_VMID = 900000960
TARGET = 1 / 0.65


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--guest-mb", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--guests", type=int, default=8)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ctkit-parallel-bench-", dir=opts.dir))
    work.chmod(0o755)
    root = Root(work / "root")
    root.path.mkdir()
    try:
        bench(root, work, opts)
    finally:
        cleanup_root(root.path)
        shutil.rmtree(work, ignore_errors=True)


def bench(root: Root, work: Path, opts: argparse.Namespace) -> None:
    tpl = pack(build_busybox_rootfs(work / "tpl"), work / "busybox_1.0-1_amd64.tar.zst")
    vmids = [FIRST_VMID + i for i in range(opts.guests)]
    for i, vmid in enumerate(vmids):
        root.pct("create", vmid, tpl, "--rootfs", "local:0")
        generate(root.rootfs(vmid), opts.guest_mb, seed=i + 1)
        root.pct("start", vmid)
    print(f"host: {os.cpu_count()} CPUs; {opts.guests} running CTs, {opts.guest_mb} MiB each")
    best: dict[int, float] = {}
    for rep in range(opts.reps):
        for workers in (1, 2):
            dump = work / f"dump-{rep}-{workers}"
            dump.mkdir()
            seconds, _hwm, _maxrss, _err = root.vzdump(
                *vmids, "--mode", "suspend", "--compress", "zstd", "--dumpdir", dump,
                "--parallel", workers,
            )  # fmt: skip
            shutil.rmtree(dump)
            print(f"  {workers} worker(s): {seconds:.2f}s")
            best[workers] = min(best.get(workers, seconds), seconds)
    dump = work / "dump-rss"
    dump.mkdir()
    seconds4, hwm, _maxrss, _err = root.vzdump(
        *vmids, "--mode", "suspend", "--compress", "zstd", "--dumpdir", dump, "--parallel", 4
    )
    ratio = best[1] / best[2]
    print(f"2 workers: {best[2]:.2f}s vs 1 worker: {best[1]:.2f}s -> ratio {ratio:.2f} "
          f"({best[2] / best[1]:.2f}x the time; target <= 0.65x)")  # fmt: skip
    print(f"4 workers: {seconds4:.2f}s, peak RSS of vzdump {hwm / 1024:.1f} MiB (target < 200)")
    results.record(
        "parallel", "suspend-8ct-2-workers", ratio, target=round(TARGET, 3),
        one_worker_s=round(best[1], 3), two_workers_s=round(best[2], 3),
        four_workers_s=round(seconds4, 3), four_workers_rss_mib=round(hwm / 1024, 1),
    )  # fmt: skip


if __name__ == "__main__":
    main()
