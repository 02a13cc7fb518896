"""Benchmark backups to a restic storage (not part of the test suite).

    .venv/bin/python bench/restic_bench.py [--dir /var/tmp] [--size-mb 1024] [--threads 2]

Builds a scratch CTKIT_ROOT with a stopped unprivileged container (the tree of
bench/vzdump_bench.py) and a restic storage on a local repository, then, side by side in one
run (ratio = reference time / ctkit time):

- first backup: ``vzdump --storage offsite`` into an empty repository vs ``restic backup`` of
  the same tree into another empty repository (target >= 0.9);
- second backup of the unchanged container vs a full stop-mode ``vzdump --compress zstd`` to a
  dump directory (the issue's target: at most 0.5x its time at 1 GiB, i.e. ratio >= 2.0),
  with restic's own backup of the same unchanged tree beside it (the floor);
  then the tree grows to ``--scale`` times its size (4: 4 GiB) and the same pair is timed
  again (target: at most 0.2x, ratio >= 5.0);
- restore: ``pct restore`` of the snapshot vs ``restic restore`` of it, ``--reps`` pairs in
  turn, the median of the pairs' ratios (target >= 0.9), into a directory on the host's file
  system and into a new ext4 image (see :func:`restores`);
- peak RSS of the vzdump process (< 150 MB).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import record  # noqa: E402
from bench.vzdump_bench import BIN, VMID, Root, generate, scratch_root  # noqa: E402
from shared.testbed import build_busybox_rootfs, pack  # noqa: E402

PASSWORD = "bench password"


def restic_env(repo: Path, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD_FILE": str(work / "pw"),
        "RESTIC_CACHE_DIR": str(work / "cache"),
    }


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="restore pairs (median)")
    parser.add_argument("--scale", type=int, default=4, help="then the tree at N times the size")
    opts = parser.parse_args()
    with scratch_root("ctkit-restic-bench-", opts.dir) as (root, work):
        bench(root, work, opts)


def bench(root: Root, work: Path, opts: argparse.Namespace) -> None:
    tpl = pack(build_busybox_rootfs(work / "tpl"), work / "busybox_1.0-1_amd64.tar.zst")
    root.pct("create", VMID, tpl, "--rootfs", "local:0")
    rootfs = root.rootfs(VMID)
    size, files = generate(rootfs, opts.size_mb, seed=1)
    print(f"tree: {size >> 20} MiB, {files} files")
    (work / "pw").write_text(PASSWORD + "\n")
    env = root.env
    add = [str(BIN / "vzdump"), "storage", "add", "restic", "offsite", "--repository",
           str(work / "repo"), "--password-file", str(work / "pw"), "--init"]  # fmt: skip
    subprocess.run(add, env=env, check=True, capture_output=True)
    ref_env = restic_env(work / "refrepo", work)
    subprocess.run(["restic", "init", "-q"], env=ref_env, check=True, capture_output=True)
    subprocess.run(["sync"], check=True)
    ref_first = timed(["restic", "backup", "-q", "."], ref_env, cwd=rootfs)
    subprocess.run(["sync"], check=True)
    first, hwm, _maxrss, _err = root.vzdump(VMID, "--storage", "offsite", "--mode", "stop")
    ratio = ref_first / first
    print(f"first backup: vzdump {first:.2f}s, restic backup {ref_first:.2f}s, ratio {ratio:.2f}")
    record("restic", "first-backup", ratio, ours_s=first, reference_s=ref_first,
           size_mib=size >> 20, peak_rss_mib=hwm / 1024, target=0.9)  # fmt: skip
    hwm2 = unchanged_backup(root, work, opts, "second-backup-vs-tar", size, 2.0, ref_env)
    listing = subprocess.run([str(BIN / "vzdump"), "list", "offsite"], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    volid = listing.splitlines()[-1].split()[0]
    for volume in ("dir", "raw"):
        restores(root, work, opts, volid, volume, ref_env, size)
    if opts.scale > 1:
        added, _files = generate(rootfs, opts.size_mb * (opts.scale - 1), seed=2)
        time.sleep(1.1)
        root.vzdump(VMID, "--storage", "offsite", "--mode", "stop")  # stores the new files
        subprocess.run(["restic", "backup", "-q", "."], env=ref_env, cwd=rootfs, check=True,
                       capture_output=True)  # and into the reference repository  # fmt: skip
        metric = f"second-backup-vs-tar-{opts.scale}x"
        hwm2 = max(hwm2, unchanged_backup(root, work, opts, metric, size + added, 5.0, ref_env))
    print(f"peak RSS of vzdump: {max(hwm, hwm2) / 1024:.0f} MiB (target < 150 MB)")


def restores(root: Root, work: Path, opts: argparse.Namespace, volid: str, volume: str,
             ref_env: dict[str, str], size: int) -> None:  # fmt: skip
    """``pct restore`` of the snapshot vs ``restic restore`` of it, into the same kind of
    target: a directory on the host's file system (``dir``: the container's volume a
    subvolume directory of dir storage), or a new 4 GiB ext4 image (``raw``: the container's
    volume a raw image, as dir storage makes by default; the reference makes, mounts and
    unmounts one by hand, as pct restore does). The host file system of the reference VM
    creates files slowly (about 0.7 ms a file), which restic's parallel writers hide and tar,
    one file after another, cannot; an ext4 image of its own does not.

    Pairs in turn, each into fresh targets, the first of a pair alternating and each run
    after a sync: otherwise the gigabyte the first left dirty is written back while the second
    runs. The median of the pairs' ratios."""
    ratios, ours_runs, ref_runs = [], [], []
    for rep in range(opts.reps):
        out, image = work / f"out{rep}", work / f"ref{rep}.raw"
        vmid = VMID + 1 + rep
        argv = [str(BIN / "pct"), "restore", str(vmid), volid, "--storage", "local"]
        ref_argv = ["restic", "restore", "-q", "latest", "--target", str(out)]
        if volume == "raw":
            argv += ["--rootfs", "local:4"]
            img, mnt = shlex.quote(str(image)), shlex.quote(str(out))
            # unmounted whatever restic does: the cleanup below must not reach into the image
            ref_argv = ["sh", "-ec", f"truncate -s 4G {img}; mkfs.ext4 -q -F {img}; mkdir {mnt}; "
                        f"mount -o loop {img} {mnt}; trap 'umount {mnt}' EXIT; "
                        f"{shlex.join(ref_argv)}"]  # fmt: skip
        for which in ("ref", "ours") if rep % 2 == 0 else ("ours", "ref"):
            subprocess.run(["sync"], check=True)
            if which == "ref":
                ref_runs.append(timed(ref_argv, ref_env))
            else:
                ours_runs.append(timed(argv, root.env))
        ratios.append(ref_runs[-1] / ours_runs[-1])
        shutil.rmtree(out, ignore_errors=True)
        image.unlink(missing_ok=True)
        root.pct("destroy", vmid)
    ratio = statistics.median(ratios)
    ours, ref_restore = statistics.median(ours_runs), statistics.median(ref_runs)
    print(f"restore into {volume}: pct restore {ours:.2f}s, restic restore {ref_restore:.2f}s "
          f"(medians of {opts.reps}), ratio {ratio:.2f} (median of the pairs)")  # fmt: skip
    metric = "restore" if volume == "dir" else "restore-raw"
    record("restic", metric, ratio, ours_s=ours, reference_s=ref_restore,
           size_mib=size >> 20, target=0.9)  # fmt: skip


def unchanged_backup(root: Root, work: Path, opts: argparse.Namespace, metric: str, size: int,
                     target: float, ref_env: dict[str, str]) -> int:  # fmt: skip
    """A backup of the unchanged container into the repository vs a full tar.zst vzdump of
    it, each after a sync (the full one's fsync otherwise waits for whatever the runs before
    left dirty: the 4 GiB tree just written, the repository: it took 9-28 s from run to run);
    beside them, restic's own backup of the same unchanged tree into the reference
    repository (whose last snapshot holds it), the floor for ctkit's. Returns the peak RSS
    (KiB) of the restic one."""
    time.sleep(1.1)  # snapshot times have one-second resolution
    subprocess.run(["sync"], check=True)
    second, hwm, _m, _e = root.vzdump(VMID, "--storage", "offsite", "--mode", "stop")
    subprocess.run(["sync"], check=True)
    alone = timed(["restic", "backup", "-q", "."], ref_env, cwd=root.rootfs(VMID))
    dump = work / "dump"
    dump.mkdir()
    subprocess.run(["sync"], check=True)
    full, _h, _m, _e = root.vzdump(VMID, "--mode", "stop", "--compress", "zstd", "--zstd",
                                   opts.threads, "--dumpdir", dump)  # fmt: skip
    shutil.rmtree(dump)
    print(f"backup of the unchanged {size >> 20} MiB tree: {second:.2f}s (restic backup alone "
          f"{alone:.2f}s); full tar.zst vzdump {full:.2f}s; {second / full:.2f}x its time "
          f"(target <= {1 / target:.1f}x)")  # fmt: skip
    record("restic", metric, full / second, ours_s=second, reference_s=full,
           restic_alone_s=round(alone, 3), size_mib=size >> 20, peak_rss_mib=hwm / 1024,
           target=target)  # fmt: skip
    return hwm


if __name__ == "__main__":
    main()
