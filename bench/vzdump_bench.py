"""Benchmark ``vzdump`` against the plain shell pipeline, its memory, and the frozen windows
(not part of the test suite).

    .venv/bin/python bench/vzdump_bench.py [--dir /var/tmp] [--size-mb 1024] [--threads 2]
                                           [--reps 3] [--skip-modes]

Builds a scratch CTKIT_ROOT below ``--dir`` with a stopped unprivileged container on a dir
volume (``--rootfs local:0``) and fills its root file system with many small text-like files
plus some large incompressible ones (owned by the container's root, 100000). Then, side by side
in one run:

- stop mode, zstd: ``vzdump <vmid> --mode stop --compress zstd --zstd N --dumpdir D`` (the real
  console script: a fresh process, so the figure includes interpreter start and imports) vs
  ``tar --numeric-owner -cf - . | zstd -T<N> -3 > out`` on the same tree. Ratio = reference
  time / vzdump time (best of ``--reps`` interleaved runs; target >= 0.95). vzdump does more
  work than the reference: it runs tar in the container's user namespace (lxc-usernsexec) with
  --acls/--xattrs/--sparse, and fsyncs the archive before the rename; so the reference is also
  timed with ``&& sync <archive>`` (the same durability), as a second ratio; and the fixed
  cost of a run (vzdump of the still empty container) is measured, to give the ratio of the
  part that scales with the data;
- peak RSS of the vzdump process (VmHWM sampled from /proc, and wait4's ru_maxrss, which also
  covers the children it waited for) with half the tree and with the whole tree: it must stay
  under 150 MB and not grow with the size;
- the frozen window (``frozen window: N s`` in the log): suspend mode and snapshot mode on a
  btrfs loop file system, for a small running container and for one with the full tree.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.fakehost import add_storage, make_btrfs  # noqa: E402
from shared.testbed import (  # noqa: E402
    build_busybox_rootfs,
    cleanup_root,
    pack,
)

BIN = Path(sys.executable).parent
VMID = 900000950
HOST_ROOT = 100000  # the container's root as the host sees it (default unprivileged map)
WORDS = [f"word{i}" for i in range(4000)] + ["the", "a", "config", "usr", "lib", "etc"]


# --- the tree ----------------------------------------------------------------------------------


def text_pool(rng: random.Random, size: int = 8 << 20) -> bytes:
    """Text-like bytes to cut small files from (zstd -3 gets about 3:1 on them)."""
    out = bytearray()
    while len(out) < size:
        out += " ".join(rng.choice(WORDS) for _ in range(2000)).encode() + b"\n"
    return bytes(out)


def generate(root: Path, size_mb: int, seed: int) -> tuple[int, int]:
    """Add ``size_mb`` MiB below ``root``: 60 % small text files (1-64 KiB), 40 % large random
    files (16-48 MiB). Returns (bytes, files)."""
    rng = random.Random(seed)
    pool = text_pool(rng)
    target, total, files = size_mb << 20, 0, 0
    big_budget = target * 2 // 5
    base = root / f"srv/bench{seed}"
    while big_budget > 0:
        size = min(big_budget, rng.randint(16 << 20, 48 << 20))
        path = base / "big" / f"blob{files}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for left in range(size, 0, -(4 << 20)):
                fh.write(os.urandom(min(left, 4 << 20)))
        big_budget -= size
        total += size
        files += 1
    while total < target:
        size = rng.randint(1 << 10, 64 << 10)
        at = rng.randrange(0, len(pool) - size)
        path = base / f"d{files % 211}" / f"s{files % 7}" / f"f{files}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pool[at : at + size])
        total += size
        files += 1
    for dirpath, dirnames, filenames in os.walk(root / "srv"):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), HOST_ROOT, HOST_ROOT)
        os.lchown(dirpath, HOST_ROOT, HOST_ROOT)
    return total, files


# --- running things ----------------------------------------------------------------------------


class Root:
    """A scratch CTKIT_ROOT for the console scripts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # the commands as installed (pip writes their bytecode): cached bytecode, written on
        # the first run into the scratch dir, not compiled from source on every run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env = {**env, "CTKIT_ROOT": str(path),
                    "PYTHONPYCACHEPREFIX": str(path.parent / "pycache")}  # fmt: skip

    def pct(self, *args: object) -> None:
        subprocess.run([str(BIN / "pct"), *map(str, args)], env=self.env, check=True,
                       capture_output=True)  # fmt: skip

    def rootfs(self, vmid: int) -> Path:
        conf = (self.path / f"etc/pve/lxc/{vmid}.conf").read_text()
        volid = re.search(r"^rootfs: ([^,\n]+)", conf, re.M)
        assert volid
        sid, name = volid.group(1).split(":", 1)
        base = {"local": self.path / "var/lib/vz", "bt": self.path / "mnt/btrfs"}[sid]
        return base / "images" / name  # <vmid>/subvol-<vmid>-disk-N.subvol

    def vzdump(self, *args: object) -> tuple[float, int, int, str]:
        """Run vzdump; returns (seconds, VmHWM KiB sampled, ru_maxrss KiB, stderr)."""
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [str(BIN / "vzdump"), *map(str, args)], env=self.env, stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip
            peak = [0]
            done = threading.Event()
            sampler = threading.Thread(target=_sample_hwm, args=(proc.pid, peak, done))
            sampler.start()
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            text = err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"vzdump failed ({proc.returncode}):\n{text}")
        return seconds, peak[0], usage.ru_maxrss, text


@contextlib.contextmanager
def scratch_root(prefix: str, base: str) -> Iterator[tuple[Root, Path]]:
    """A work dir below ``base`` (0755: the containers' root, 100000, reads the trees and temp
    dirs) with a scratch CTKIT_ROOT in it; containers, mounts and files go again at the end."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    work.chmod(0o755)
    root = Root(work / "root")
    root.path.mkdir()
    try:
        yield root, work
    finally:
        cleanup_root(root.path)
        shutil.rmtree(work, ignore_errors=True)


def btrfs_storage(root: Root, size_mb: int) -> None:
    """A btrfs loop file system (at least 1 GiB) as storage ``bt`` beside ``local``."""
    mnt = root.path / "mnt/btrfs"
    make_btrfs(root.path / "btrfs.img", mnt, max(size_mb, 1024) << 20)
    mnt.chmod(0o755)
    add_storage(root.path, "btrfs: bt\n\tpath /mnt/btrfs\n\tcontent rootdir,images,backup\n")


def _sample_hwm(pid: int, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            kib = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")))
            peak[0] = max(peak[0], kib)
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(0.02)


def shell(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.perf_counter() - start


def frozen(text: str) -> float:
    m = re.search(r"frozen window: ([0-9.]+) s", text)
    if not m:
        raise RuntimeError(f"no frozen window in:\n{text}")
    return float(m.group(1))


# --- the parts ---------------------------------------------------------------------------------


def fixed_cost(root: Root, work: Path, opts: argparse.Namespace) -> float:
    """A vzdump run of the still empty container (busybox, 2.4 MB): interpreter start, imports,
    config, lock, mounts, lxc-usernsexec, fsync and notification - what does not scale."""
    dump = work / "dump"
    runs = []
    for _ in range(opts.reps):
        shutil.rmtree(dump, ignore_errors=True)
        dump.mkdir()
        args = ["--mode", "stop", "--compress", "zstd", "--zstd", opts.threads, "--dumpdir", dump]
        runs.append(root.vzdump(VMID, *args)[0])
    return min(runs)


def stop_mode(root: Root, rootfs: Path, work: Path, opts: argparse.Namespace, label: str,
              size: int, fixed: float) -> tuple[float, int]:  # fmt: skip
    """Interleaved runs of vzdump and the reference on the same tree; prints one line."""
    dump = work / "dump"
    ours, ref, ref_sync, hwm, maxrss = [], [], [], 0, 0
    pipeline = f"cd {rootfs} && tar --numeric-owner -cf - . | zstd -q -T{opts.threads} -3"
    for _ in range(opts.reps):
        shutil.rmtree(dump, ignore_errors=True)
        dump.mkdir()
        subprocess.run(["sync"], check=True)
        ref.append(shell(f"{pipeline} > {work}/ref.tar.zst"))
        subprocess.run(["sync"], check=True)
        # the same, but with the archive on disk at the end, as vzdump guarantees (fsync
        # before the rename): coreutils' `sync FILE` fsyncs just that file
        ref_sync.append(shell(f"{pipeline} > {work}/ref.tar.zst && sync {work}/ref.tar.zst"))
        subprocess.run(["sync"], check=True)
        args = ["--mode", "stop", "--compress", "zstd", "--zstd", opts.threads, "--dumpdir", dump]
        seconds, peak, rss, _text = root.vzdump(VMID, *args)
        ours.append(seconds)
        hwm, maxrss = max(hwm, peak), max(maxrss, rss)
    archive = next(dump.glob("*.tar.zst"))
    ratio = min(ref) / min(ours)
    mib = size / 2**20
    print(
        f"stop/zstd {label}: vzdump {min(ours):.2f}s ({mib / min(ours):.0f} MiB/s), "
        f"tar|zstd {min(ref):.2f}s ({mib / min(ref):.0f} MiB/s), ratio {ratio:.2f}; "
        f"tar|zstd+fsync {min(ref_sync):.2f}s, ratio {min(ref_sync) / min(ours):.2f}; "
        f"streaming part (minus the fixed {fixed:.2f}s) ratio "
        f"{min(ref) / (min(ours) - fixed):.2f}; "
        f"archives {archive.stat().st_size >> 20} / "
        f"{(work / 'ref.tar.zst').stat().st_size >> 20} MiB; "
        f"peak RSS vzdump {hwm / 1024:.0f} MiB (ru_maxrss incl. waited children "
        f"{maxrss / 1024:.0f} MiB)"
    )
    from bench.results import record

    record("vzdump", f"stop zstd {size >> 20} MiB", ratio, ours_s=min(ours), reference_s=min(ref),
           streaming_ratio=round(min(ref) / (min(ours) - fixed), 3),
           peak_rss_mib=round(hwm / 1024, 1))  # fmt: skip
    return ratio, hwm


def frozen_windows(root: Root, work: Path, tpl: Path, size_mb: int, seed: int) -> None:
    """Suspend mode and btrfs snapshot mode, small and big running containers."""
    btrfs_storage(root, size_mb * 3 + 2048)
    dump = work / "dump"
    for n, (storage, big) in enumerate([("local", False), ("bt", False), ("bt", True)]):
        vmid = VMID + 1 + n
        root.pct("create", vmid, tpl, "--rootfs", f"{storage}:0")
        label = "small"
        if big:
            size, files = generate(root.rootfs(vmid), size_mb, seed)
            label = f"{size >> 20} MiB, {files} files"
        root.pct("start", vmid)
        modes = ["suspend"] if storage == "local" else ["snapshot"]
        if big:
            modes = ["snapshot", "suspend"]
        for mode in modes:
            shutil.rmtree(dump, ignore_errors=True)
            dump.mkdir()
            seconds, _p, _r, text = root.vzdump(vmid, "--mode", mode, "--dumpdir", dump,
                                                "--compress", "zstd", "--zstd", "0")  # fmt: skip
            where = "btrfs" if storage == "bt" else "dir"
            print(f"{mode} on {where} ({label}): frozen window {frozen(text) * 1000:.0f} ms, "
                  f"backup {seconds:.1f}s")  # fmt: skip
            from bench.results import record

            record("vzdump", f"frozen {mode} {where} {label}", None,
                   frozen_ms=round(frozen(text) * 1000, 1))  # fmt: skip
        root.pct("stop", vmid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-modes", action="store_true")
    opts = parser.parse_args()
    with scratch_root("ctkit-vzdump-bench-", opts.dir) as (root, work):
        bench(root, work, opts)


def bench(root: Root, work: Path, opts: argparse.Namespace) -> None:
    tpl = pack(build_busybox_rootfs(work / "tpl"), work / "busybox_1.0-1_amd64.tar.zst")
    root.pct("create", VMID, tpl, "--rootfs", "local:0")
    rootfs = root.rootfs(VMID)
    half = opts.size_mb // 2
    print(f"host: {os.cpu_count()} CPUs; zstd threads {opts.threads}; work dir {work}")
    fixed = fixed_cost(root, work, opts)
    print(f"fixed cost of a vzdump run (empty container): {fixed:.2f}s")
    size, files = generate(rootfs, half, seed=1)
    label = f"{size >> 20} MiB/{files} files"
    _r, rss_half = stop_mode(root, rootfs, work, opts, label, size, fixed)
    more, more_files = generate(rootfs, opts.size_mb - half, seed=2)
    size, files = size + more, files + more_files
    label = f"{size >> 20} MiB/{files} files"
    ratio, rss_full = stop_mode(root, rootfs, work, opts, label, size, fixed)
    print(f"RSS growth half -> full tree: {(rss_full - rss_half) / 1024:+.1f} MiB; "
          f"target ratio >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}; "
          f"RSS < 150 MB: {'met' if rss_full < 150 * 1000 else 'NOT met'}")  # fmt: skip
    if not opts.skip_modes:
        frozen_windows(root, work, tpl, half, seed=3)


if __name__ == "__main__":
    main()
