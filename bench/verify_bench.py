"""Benchmark checking and reading a backup (not part of the test suite).

    .venv/bin/python bench/verify_bench.py [--dir /dev/shm] [--size-mb 1024] [--reps 3]

Builds a vzdump-like ``.tar.zst`` (the config member first, then a generated tree), then times
side by side in one run:

- verify:  ``shared.backups.verify`` (decode every frame, walk every header, parse the config)
           vs ``zstd -t archive`` plus ``zstd -dc archive | tar -tf -`` (the two checks
           that together cover what verify does), and vs the pipeline alone;
- extract: one small file from the end of the archive (time only: reading stops after it);
- browse:  every member listed; its peak RSS (target < 100 MB).

Each of ctkit's runs happens in a fresh child interpreter that reports its peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: bench.results, shared

from bench.archive_bench import generate, hand_extract, shell  # noqa: E402
from bench.results import record  # noqa: E402

NAME = "vzdump-lxc-100-2020_01_01-00_00_00.tar.zst"
CONF = "arch: amd64\nhostname: bench\nrootfs: local:100/vm-100-disk-0.raw,size=8G\n"


def child(op: str, args: list[str]) -> None:
    from shared.backups.browse import browse
    from shared.backups.extract import extract_paths
    from shared.backups.locate import archive_file
    from shared.backups.verify import verify

    backup = archive_file(Path(args[0]))
    start = time.perf_counter()
    info: dict[str, object] = {}
    if op == "verify":
        info["members"] = verify(backup, store_result=False).members
    elif op == "browse":
        info["members"] = sum(1 for _ in browse(backup))
    else:
        out = extract_paths(backup, [args[1]], Path(args[2]))
        info["stopped_early"] = out.stopped_early
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    own = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))
    print(json.dumps({"seconds": seconds, "rss_kib": own, **info}))


def run_child(op: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{op} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def make_archive(work: Path, size_mb: int) -> tuple[Path, str]:
    src = work / "src"
    (src / "etc/vzdump").mkdir(parents=True)
    (src / "etc/vzdump/pct.conf").write_text(CONF)
    generate(src / "data", size_mb)
    archive = work / NAME
    shell(
        f"cd {src} && tar --numeric-owner -cf - ./etc/vzdump/pct.conf --exclude ./etc/vzdump "
        f"--totals . 2>/dev/null | zstd -q -T2 -3 > {archive}"
    )
    names = subprocess.run(
        f"zstd -dc {archive} | tar -tf - | grep -v '/$' | tail -1",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return archive, names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    opts = parser.parse_args()
    if opts.child:
        child(opts.child[0], opts.child[1:])
        return
    work = Path(tempfile.mkdtemp(prefix="ctkit-bench-verify-", dir=opts.dir))
    try:
        bench(work, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, opts: argparse.Namespace) -> None:
    archive, last = make_archive(work, opts.size_mb)
    print(f"archive: {archive.stat().st_size >> 20} MiB ({opts.size_mb} MiB tree), last {last}")
    ours, ref_pipe, ref_both, rss = [], [], [], []
    for _ in range(opts.reps):
        zt = shell(f"zstd -q -t {archive}")
        pipe = shell(f"zstd -dc {archive} | tar -tf - >/dev/null")
        ref_pipe.append(pipe)
        ref_both.append(zt + pipe)
        res = run_child("verify", str(archive))
        ours.append(res["seconds"])
        rss.append(res["rss_kib"])
    ratio = min(ref_both) / min(ours)
    ratio_pipe = min(ref_pipe) / min(ours)
    print(
        f"verify : ours {min(ours):.2f}s  zstd -t + zstd -dc|tar -t {min(ref_both):.2f}s "
        f"ratio {ratio:.2f}  (pipeline alone {min(ref_pipe):.2f}s, ratio {ratio_pipe:.2f})"
    )
    print(f"peak RSS verify: {max(rss) / 1024:.0f} MiB")
    record("verify", "verify", ratio, ours_s=min(ours), reference_s=min(ref_both),
           pipeline_s=min(ref_pipe), ratio_vs_pipeline=ratio_pipe, size_mib=opts.size_mb,
           peak_rss_mib=max(rss) / 1024, target=0.9)  # fmt: skip
    out = work / "out"
    runs, full = [], []
    for records in (False, True):  # the reference both ways, ctkit as often
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        runs.append(run_child("extract", str(archive), last.lstrip("."), str(out)))
        full.append(hand_extract(archive, out, last, records=records))
    res = min(runs, key=lambda r: float(r["seconds"]))
    print(
        f"extract last file: {res['seconds']:.2f}s (stopped early: {res['stopped_early']}); "
        f"zstd -dc | tar -x of it {min(full):.2f}s"
    )
    record("verify", "extract-last-file", min(full) / res["seconds"], ours_s=res["seconds"],
           reference_s=min(full), peak_rss_mib=max(r["rss_kib"] for r in runs) / 1024)  # fmt: skip
    res = run_child("browse", str(archive))
    print(f"browse: {res['members']} members in {res['seconds']:.2f}s, "
          f"peak RSS {res['rss_kib'] / 1024:.0f} MiB (target < 100 MB)")  # fmt: skip
    record("verify", "browse", None, ours_s=res["seconds"], peak_rss_mib=res["rss_kib"] / 1024)


if __name__ == "__main__":
    main()
