"""Benchmark shared.archive against the plain shell pipelines (not part of the test suite).

    .venv/bin/python bench/archive_bench.py [--dir /dev/shm] [--size-mb 400] [--threads 2]

Generates a tree (text-like and random files, a few large ones, symlinks), then times, side by
side in one run:

- create:  ``create(..., compression=ZSTD, zstd_threads=N)``  vs
           ``tar --numeric-owner -cf - . | zstd -T<N> -3 > out``
- extract: ``extract(archive, empty_dir)``  vs  ``zstd -dc archive | tar -xf - -C empty_dir``,
           with tar's default records and with the 1 MiB records ctkit's tar reads, each
           once a round, and ctkit twice a round (the same number of runs on both sides)

Each of ctkit's runs happens in a fresh child interpreter that reports its own peak RSS
(``VmHWM``) and that of its children (tar, ``getrusage(RUSAGE_CHILDREN)``; an upper bound, as
it includes what tar inherited at fork). Ratios are throughput ratios (reference time / ctkit
time, best of ``--reps`` interleaved runs): 1.0 = as fast, the target is >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: bench.results, shared

from bench.results import record  # noqa: E402

WORDS = [f"word{i}" for i in range(4000)] + ["the", "a", "config", "usr", "lib", "etc"]


def generate(root: Path, size_mb: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    target, total, n = size_mb << 20, 0, 0
    while total < target:
        d = root / f"d{n % 97}" / f"s{n % 13}"
        d.mkdir(parents=True, exist_ok=True)
        kind = rng.random()
        if kind < 0.003:  # a few large, half-compressible files
            size = rng.randint(8 << 20, 24 << 20)
            data = os.urandom(size // 2) + bytes(size // 4) + b"pattern" * (size // 28)
        elif kind < 0.10:  # random (already compressed) data
            size = rng.randint(16 << 10, 512 << 10)
            data = os.urandom(size)
        else:  # text-like
            size = rng.randint(1 << 10, 64 << 10)
            data = " ".join(rng.choice(WORDS) for _ in range(size // 6)).encode()
        (d / f"f{n}").write_bytes(data)
        if n % 50 == 0:
            os.symlink(f"f{n}", d / f"l{n}")
        total += len(data)
        n += 1
    return total


def child(op: str, args: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    from shared.archive.codecs import Compression
    from shared.archive.tarcreate import CreateSpec, create
    from shared.archive.tarextract import extract

    start = time.perf_counter()
    if op == "create":
        tmpdir, snap, out, threads = args
        spec = CreateSpec(Path(tmpdir), Path(snap), config_members=())
        create(
            spec, Path(out), compression=Compression.ZSTD, zstd_threads=int(threads), fsync=False
        )
    else:
        archive, dest = args
        extract(Path(archive), Path(dest), compression=Compression.ZSTD)
    seconds = time.perf_counter() - start
    # VmHWM is this interpreter's own peak; ru_maxrss would include the parent's peak, which
    # Linux carries across fork+exec.
    status = Path("/proc/self/status").read_text()
    own = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_kib": own, "children_rss_kib": kids}))


def run_child(op: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def shell(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.perf_counter() - start


def hand_extract(
    archive: Path, target: Path, *members: str, records: bool, run: Callable[[str], float] = shell
) -> float:
    """``zstd -dc archive | tar -xf - -C target [members]``, timed once: with tar's default
    10 KiB records, or (``records``) with the 1 MiB records ctkit's tar reads (``READ_RECORDS``).
    The benches run it both ways and ctkit as often, and the fastest of all counts on each side:
    a best of more runs would favour the side that has them. ``target`` is emptied first and
    keeps the run's files."""
    from shared.archive.tarextract import READ_RECORDS

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    flags = READ_RECORDS if records else []
    tar = shlex.join(["tar", "-xf", "-", *flags, "-C", str(target), *members])
    return run(f"zstd -dc {shlex.quote(str(archive))} | {tar}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--size-mb", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--child", nargs="+")
    opts = parser.parse_args()
    if opts.child:
        child(opts.child[0], opts.child[1:])
        return
    work = Path(tempfile.mkdtemp(prefix="ctkit-bench-", dir=opts.dir))
    try:
        bench(work, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, opts: argparse.Namespace) -> None:
    src, cfg = work / "src", work / "cfg"
    src.mkdir()
    cfg.mkdir()
    size = generate(src, opts.size_mb)
    print(f"tree: {size / 2**20:.0f} MiB in {work}, zstd threads {opts.threads}")
    ours_c, ref_c, ours_x, ref_x, rss = [], [], [], [], []
    for _ in range(opts.reps):
        ref_c.append(
            shell(
                f"cd {src} && tar --numeric-owner -cf - . | zstd -q -T{opts.threads} -3 "
                f"> {work}/ref.tar.zst"
            )
        )
        res = run_child("create", str(cfg), str(src), str(work / "ours.tar.zst"), str(opts.threads))
        ours_c.append(res["seconds"])
        rss.append(("create", res["rss_kib"], res["children_rss_kib"]))
        for records in (False, True):  # the reference both ways, ctkit as often
            ref_x.append(hand_extract(work / "ours.tar.zst", work / "ref_out", records=records))
            shutil.rmtree(work / "ours_out", ignore_errors=True)
            (work / "ours_out").mkdir()
            res = run_child("extract", str(work / "ours.tar.zst"), str(work / "ours_out"))
            ours_x.append(res["seconds"])
            rss.append(("extract", res["rss_kib"], res["children_rss_kib"]))
    ratio_c = min(ref_c) / min(ours_c)
    ratio_x = min(ref_x) / min(ours_x)
    print(f"create : ours {min(ours_c):.2f}s  tar|zstd {min(ref_c):.2f}s  ratio {ratio_c:.2f}")
    print(f"extract: ours {min(ours_x):.2f}s  zstd|tar {min(ref_x):.2f}s  ratio {ratio_x:.2f}")
    sizes = (work / "ours.tar.zst").stat().st_size, (work / "ref.tar.zst").stat().st_size
    print(f"archive sizes: ours {sizes[0] >> 20} MiB, reference {sizes[1] >> 20} MiB")
    measured = {"create": (ratio_c, ours_c, ref_c), "extract": (ratio_x, ours_x, ref_x)}
    for op, (ratio, ours, ref) in measured.items():
        own = max(r[1] for r in rss if r[0] == op)
        kids = max(r[2] for r in rss if r[0] == op)
        print(f"peak RSS {op}: python {own / 1024:.0f} MiB, children <= {kids / 1024:.0f} MiB")
        record("archive", op, ratio, ours_s=min(ours), reference_s=min(ref),
               tree_mib=round(size / 2**20), threads=opts.threads, reps=opts.reps,
               peak_rss_mib=own / 1024, children_rss_mib=kids / 1024)  # fmt: skip


if __name__ == "__main__":
    main()
