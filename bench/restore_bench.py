"""Benchmark ``pct restore`` against the plain shell pipeline (not part of the test suite).

    .venv/bin/python bench/restore_bench.py [--dir /dev/shm] [--size-mb 1024] [--reps 3]

Generates a tree (the generator of ``archive_bench``), packs it as vzdump does (config members
first, GNU tar with vzdump's flags, ``zstd -T2``) and times, side by side in one run:

- ours:      ``restore(RestoreRequest(vmid, archive))`` under a fresh CTKIT_ROOT: the whole
             restore (config, volume allocation, mount, extraction, merge, commit), with the
             root file system on a dir-storage subvolume, i.e. a directory on the same file
             system as the reference's target;
- reference: ``zstd -dc archive | tar -xf - -C empty_dir``, with tar's default records and
             with the 1 MiB records ctkit's tar reads, each once a round; ctkit restores
             twice a round, so that both sides have as many runs.

Each restore runs in a fresh child interpreter that reports its own peak RSS (``VmHWM``) and
that of its children (tar; an upper bound). The ratio is reference time / our time, best of
the runs of ``--reps`` interleaved rounds (1.0 = as fast; the target is >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VMID = 900000100
CONF = (
    "arch: amd64\nhostname: bench\nmemory: 512\nostype: unmanaged\n"
    "rootfs: local:100/subvol-100-disk-0.subvol,size=0T\n"
)


def child(root: str, archive: str) -> None:
    os.environ["CTKIT_ROOT"] = root
    sys.path.insert(0, str(REPO))
    from pct.ops.restore import RestoreRequest, restore

    start = time.perf_counter()
    restore(RestoreRequest(vmid=VMID, archive=archive), log=lambda _line: None)
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    own = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_kib": own, "children_rss_kib": kids}))


def pack(tree: Path, work: Path) -> Path:
    """A vzdump-style archive: pct.conf and pct.fw first, then the tree, zstd-compressed."""
    # after bench()'s sys.path
    from shared.archive.tarflags import COMMON_TAR_FLAGS
    from shared.archive.vzdumpformat import MEMBERS, write_members

    tmp = work / "vzdumptmp"
    write_members(tmp, CONF.encode(), b"", (os.getuid(), os.getgid()))
    archive = work / "vzdump-lxc-100-2024_01_02-03_04_05.tar.zst"
    cmd = ["tar", "cpf", "-", *COMMON_TAR_FLAGS, f"--directory={tmp}", *MEMBERS]
    cmd += [f"--directory={tree}", "./"]
    with open(archive, "wb") as out:
        tar = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        subprocess.run(["zstd", "-q", "-T2", "-3"], stdin=tar.stdout, stdout=out, check=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    return archive


def shell(cmd: str) -> float:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.perf_counter() - start


def ours(work: Path, archive: Path) -> dict[str, float]:
    root = work / "ctkit-root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    subprocess.run(["sync"], check=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(archive)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def bench(work: Path, opts: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from bench.archive_bench import generate, hand_extract

    tree = work / "tree"
    tree.mkdir()
    size = generate(tree, opts.size_mb)
    archive = pack(tree, work)
    shutil.rmtree(tree)
    print(f"tree: {size / 2**20:.0f} MiB, archive {archive.stat().st_size >> 20} MiB in {work}")
    mine, ref, rss = [], [], []
    for _ in range(opts.reps):
        for records in (False, True):  # the reference both ways, ctkit as often
            target = work / "ref_out"
            ref.append(hand_extract(archive, target, records=records, run=shell))
            shutil.rmtree(target)
            res = ours(work, archive)
            mine.append(res["seconds"])
            rss.append((res["rss_kib"], res["children_rss_kib"]))
    ratio = min(ref) / min(mine)
    print(f"restore: ours {min(mine):.2f}s  zstd|tar {min(ref):.2f}s  ratio {ratio:.2f}")
    runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(mine, ref, strict=True))
    print(f"  runs (ours/ref): {runs}")
    own, kids = max(r[0] for r in rss), max(r[1] for r in rss)
    print(f"peak RSS: python {own / 1024:.0f} MiB, children <= {kids / 1024:.0f} MiB")
    from bench.results import record

    record("restore", f"zstd {size >> 20} MiB", ratio, ours_s=min(mine), reference_s=min(ref),
           peak_rss_mib=round(own / 1024, 1))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs=2)
    opts = parser.parse_args()
    if opts.child:
        child(*opts.child)
        return
    work = Path(tempfile.mkdtemp(prefix="ctkit-restore-bench-", dir=opts.dir))
    try:
        bench(work, opts)
    finally:
        subprocess.run(["umount", "-R", "-l", str(work / "ctkit-root")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
