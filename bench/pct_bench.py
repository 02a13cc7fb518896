"""Benchmark ``pct create`` and ``pct start``/``stop`` against the tools underneath (not a test).

    .venv/bin/python bench/pct_bench.py [--dir /var/tmp] [--size-mb 200] [--reps 5]

Builds a busybox root file system plus ``--size-mb`` of incompressible random files, packs it
as a ``.tar.zst`` template (GNU tar + zstd, as the tests do), then times side by side in one run:

- create: ``pct create <vmid> <tpl> --rootfs local:0`` (the console script, a fresh process:
          config, volume allocation, extraction through ``lxc-usernsexec`` for the unprivileged
          default, OS detection, guest setup) vs ``zstd -dc tpl | tar -xf - -C empty_dir`` on
          the same file system; also the privileged variant (no id shifting) and the default
          raw 4 GiB volume (mkfs.ext4, loop mount);
- start+stop: ``pct start`` + ``pct stop`` vs ``lxc-start`` + ``lxc-stop --kill`` of the very
          config ``pct start`` generated (so both run ctkit's LXC hooks; the difference is the
          CLI, the checks and the config generation).

Each pct figure is given twice: end to end through the console script (a new Python process,
so it includes the interpreter start and the imports, ~0.3-0.5 s here), and for the operation
alone (the library call timed inside an already started interpreter). Ratios are reference
time / ctkit time, best of ``--reps`` interleaved runs (1.0 = as fast; the target for create is
>= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import record  # noqa: E402
from shared.testbed import build_busybox_rootfs, pack  # noqa: E402

PCT = Path(sys.executable).parent / "pct"
VMID = 900000900


def child(op: str, root: str, args: list[str]) -> None:
    """Time one library call in this (already started) interpreter; print the seconds."""
    os.environ["CTKIT_ROOT"] = root
    from pct.ops.create import CreateRequest, create
    from shared.runtime import lifecycle

    quiet = lambda _line: None  # noqa: E731
    start = time.perf_counter()
    if op == "create":
        tpl, rootfs, unpriv = args
        req = CreateRequest(
            vmid=VMID, ostemplate=tpl, params={"rootfs": rootfs}, unprivileged=unpriv == "1"
        )
        create(req, log=quiet)
    else:
        lifecycle.start(VMID, log=quiet)
        lifecycle.stop(VMID, log=quiet)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def shell(cmd: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.perf_counter() - start


def make_template(work: Path, size_mb: int) -> Path:
    rootfs = build_busybox_rootfs(work / "tpl-rootfs")
    data = rootfs / "srv/data"
    data.mkdir(parents=True)
    left, n = size_mb << 20, 0
    while left > 0:
        size = min(left, 4 << 20 if n % 4 else 256 << 10)
        (data / f"blob{n}").write_bytes(os.urandom(size))
        left -= size
        n += 1
    tpl = pack(rootfs, work / "bench_1.0-1_amd64.tar.zst")
    shutil.rmtree(rootfs)
    return tpl


class Root:
    """A scratch CTKIT_ROOT for the console script."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, "CTKIT_ROOT": str(path)}

    def pct(self, *args: object) -> float:
        return timed([str(PCT), *map(str, args)], self.env)

    def library(self, op: str, *args: str) -> float:
        argv = [sys.executable, __file__, "--child", op, str(self.path), *args]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        return float(json.loads(out.splitlines()[-1])["seconds"])

    def destroy(self, vmid: int) -> None:
        subprocess.run(
            [str(PCT), "destroy", str(vmid), "--force"], env=self.env, capture_output=True
        )

    def lxc(self, tool: str, vmid: int, *extra: str) -> float:
        lxcpath = self.path / "var/lib/lxc"
        return timed([tool, "-P", str(lxcpath), "-n", str(vmid), *extra])


def bench_create(work: Path, root: Root, tpl: Path, reps: int) -> None:
    variants = {
        "unprivileged, dir": ("local:0", "1"),
        "privileged, dir": ("local:0", "0"),
        "default raw 4G": ("local:4", "1"),
    }
    results: dict[str, list[float]] = {"ref": []}
    for _ in range(reps):
        out = work / "ref_out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(["sync"], check=True)
        results["ref"].append(shell(f"zstd -dc {tpl} | tar -xf - -C {out}"))
        shutil.rmtree(out)
        for name, (rootfs, unpriv) in variants.items():
            subprocess.run(["sync"], check=True)
            cli = root.pct("create", VMID, tpl, "--rootfs", rootfs, "--unprivileged", unpriv)
            results.setdefault(f"cli {name}", []).append(cli)
            root.destroy(VMID)
            subprocess.run(["sync"], check=True)
            lib = root.library("create", str(tpl), rootfs, unpriv)
            results.setdefault(f"lib {name}", []).append(lib)
            root.destroy(VMID)
    ref = min(results["ref"])
    print(f"create  zstd -dc | tar -x                        {ref:6.2f}s")
    for name in variants:
        cli, lib = min(results[f"cli {name}"]), min(results[f"lib {name}"])
        print(
            f"        pct create ({name:17}) cli {cli:6.2f}s ratio {ref / cli:.2f}"
            f" | operation {lib:6.2f}s ratio {ref / lib:.2f}"
        )
        record("pct", f"create {name}", ref / cli, ours_s=cli, reference_s=ref,
               operation_ratio=round(ref / lib, 3), target=0.9)  # fmt: skip


def bench_start_stop(root: Root, tpl: Path, reps: int) -> None:
    root.pct("create", VMID, tpl, "--rootfs", "local:0")
    cli, lib, ref = [], [], []
    try:
        for _ in range(reps):
            cli.append(root.pct("start", VMID) + root.pct("stop", VMID))
            lib.append(root.library("startstop"))
            # the same generated config, straight through LXC (hooks included)
            ref.append(root.lxc("lxc-start", VMID) + root.lxc("lxc-stop", VMID, "--kill"))
    finally:
        root.destroy(VMID)
    best = min(ref)
    print(f"start+stop  lxc-start + lxc-stop --kill          {best:6.2f}s")
    print(
        f"            pct start + pct stop    cli {min(cli):6.2f}s ratio {best / min(cli):.2f}"
        f" | operation {min(lib):6.2f}s ratio {best / min(lib):.2f}"
    )
    record("pct", "start+stop", best / min(cli), ours_s=min(cli), reference_s=best,
           operation_ratio=round(best / min(lib), 3), target=None)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child[0], opts.child[1], opts.child[2:])
        return
    work = Path(tempfile.mkdtemp(prefix="ctkit-pct-bench-", dir=opts.dir))
    os.chmod(work, 0o755)  # the unprivileged CT's root (uid 100000) must traverse it
    root = Root(work / "root")
    root.path.mkdir()
    try:
        tpl = make_template(work, opts.size_mb)
        print(f"template: {tpl.stat().st_size / 2**20:.0f} MiB zstd in {work}")
        bench_create(work, root, tpl, opts.reps)
        bench_start_stop(root, tpl, opts.reps)
    finally:
        root.destroy(VMID)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
