"""Benchmark ``pct create`` and ``pct start``/``stop`` against the tools underneath (not a test).

    .venv/bin/python bench/pct_bench.py [--dir /var/tmp] [--size-mb 200] [--reps 5]

Builds a busybox root file system plus ``--size-mb`` of incompressible random files, packs it
as a ``.tar.zst`` template (GNU tar + zstd, as the tests do), then times side by side in one run:

- create: ``pct create <vmid> <tpl> --rootfs <storage>:4 --unprivileged 0|1`` (the console
          script, a fresh process) on a dir storage (a raw 4 GiB image: mkfs.ext4, loop mount)
          and on a btrfs storage (a subvolume), privileged and unprivileged, each against the
          same work done by hand in one shell pipeline: allocate the volume (``truncate`` +
          ``mkfs.ext4 -O mmp -E root_owner=..`` + ``mount -o loop``, or ``btrfs subvolume
          create`` + ``chown``), ``zstd -dc tpl | tar -x`` with pct's very tar command (its
          flags, ``lxc-usernsexec`` for the unprivileged id map), ``umount`` of the image (pct
          create leaves its volume unmounted too) and a small config file written. The tar
          command runs twice, with Proxmox's flags alone and with pct's 1 MiB records added
          (``--blocking-factor=2048 --read-full-records``), and the faster run is the
          reference: ctkit is measured against the best of the two, and runs as often;
- start+stop: ``pct start`` + ``pct stop`` vs ``lxc-start`` + ``lxc-stop --kill`` of the very
          config ``pct start`` generated (so both run ctkit's LXC hooks; the difference is the
          CLI, the checks and the config generation).

Each pct figure is given twice: end to end through the console script (a new Python process,
so it includes the interpreter start and the imports), and for the operation alone (the
library call timed inside an already started interpreter). Ratios are reference time / ctkit
time, best of ``--reps`` interleaved runs (1.0 = as fast; the target for create is >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.compiled import precompile  # noqa: E402
from bench.results import record  # noqa: E402
from shared.archive.idmap import DEFAULT_UNPRIVILEGED  # noqa: E402
from shared.archive.tarextract import READ_RECORDS, tar_extract_command  # noqa: E402
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


BTRFS_MNT = "mnt/bt"
STORAGE_CFG = (
    "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup,iso\n\n"
    "btrfs: bt\n\tpath /{mnt}\n\tcontent rootdir,images\n"
)
CASES = {  # name: (storage, unprivileged)
    "dir, privileged": ("local", False),
    "dir, unprivileged": ("local", True),
    "btrfs, privileged": ("bt", False),
    "btrfs, unprivileged": ("bt", True),
}


def add_btrfs_storage(work: Path, root: Root) -> Path:
    """A btrfs file system on a loop device as storage ``bt`` (and beside it, on the same file
    system, the reference's subvolumes)."""
    image, mnt = work / "btrfs.img", root.path / BTRFS_MNT
    with open(image, "wb") as fh:
        fh.truncate(8 << 30)  # sparse: room for the 4 GiB volume and the reference
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    cfg = root.path / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(STORAGE_CFG.format(mnt=BTRFS_MNT))
    return mnt


def reference(work: Path, btrfs: Path, tpl: Path, storage: str, unpriv: bool, records: bool) -> str:
    """The same work as ``pct create`` by hand, one shell pipeline (see the module text);
    ``records`` False gives tar Proxmox's flags alone, without pct's 1 MiB records."""
    owner = "100000:100000" if unpriv else "0:0"
    conf = work / "ref.conf"
    if storage == "local":
        image, mnt = work / "ref.raw", work / "ref-mnt"
        alloc = (
            f"mkdir -p {mnt} && truncate -s 4G {image}"
            f" && mkfs.ext4 -q -F -O mmp -E root_owner={owner} {image}"
            f" && mount -o loop {image} {mnt}"
        )
        done = f"umount {mnt}"
    else:
        mnt = btrfs / "ref.subvol"
        alloc = f"btrfs -q subvolume create {mnt} && chown {owner} {mnt} && chmod 755 {mnt}"
        done = "true"
    tar_argv = tar_extract_command(mnt, DEFAULT_UNPRIVILEGED if unpriv else None)
    if not records:
        tar_argv = [arg for arg in tar_argv if arg not in READ_RECORDS]
    tar = shlex.join(tar_argv)
    config = f"printf 'arch: amd64\\nrootfs: x\\n' >{conf}.tmp && mv {conf}.tmp {conf}"
    return f"{alloc} && zstd -q -dc {tpl} | {tar} >/dev/null && {done} && {config}"


def settle(btrfs: Path) -> None:
    """Before a timed run: what the last run left dirty is written, and the subvolumes it
    deleted are gone (btrfs drops a deleted subvolume's extents in the background, and that
    work landed in whichever run came next: the btrfs figures varied by up to 2x). The
    cleaner starts at a commit: ``subvolume sync`` alone waited for the next periodic one,
    up to 30 s."""
    subprocess.run(["sync"], check=True)
    subprocess.run(["btrfs", "filesystem", "sync", str(btrfs)], check=True, capture_output=True)
    subprocess.run(["btrfs", "-q", "subvolume", "sync", str(btrfs)], check=True)


def reference_cleanup(work: Path, btrfs: Path) -> None:
    mnt = work / "ref-mnt"
    if os.path.ismount(mnt):
        subprocess.run(["umount", str(mnt)], check=False)
    (work / "ref.raw").unlink(missing_ok=True)
    if (btrfs / "ref.subvol").exists():
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(btrfs / "ref.subvol")])


def bench_create(work: Path, root: Root, tpl: Path, reps: int) -> None:
    btrfs = add_btrfs_storage(work, root)
    results: dict[str, list[float]] = {}
    try:
        for _ in range(reps):
            for name, (storage, unpriv) in CASES.items():
                rootfs, flag = f"{storage}:4", str(int(unpriv))
                # the reference's two ways each once, and pct as often: a best of more runs
                # would favour the side that has them
                for records in (False, True):
                    settle(btrfs)
                    ref = shell(reference(work, btrfs, tpl, storage, unpriv, records))
                    results.setdefault(f"ref {name}", []).append(ref)
                    reference_cleanup(work, btrfs)
                    settle(btrfs)
                    cli = root.pct("create", VMID, tpl, "--rootfs", rootfs, "--unprivileged", flag)
                    results.setdefault(f"cli {name}", []).append(cli)
                    root.destroy(VMID)
                settle(btrfs)
                lib = root.library("create", str(tpl), rootfs, flag)
                results.setdefault(f"lib {name}", []).append(lib)
                root.destroy(VMID)
    finally:
        root.destroy(VMID)
        reference_cleanup(work, btrfs)
        subprocess.run(["umount", str(btrfs)], check=False)
        (root.path / "etc/pve/storage.cfg").unlink(missing_ok=True)
    for name in CASES:
        ref = min(results[f"ref {name}"])
        cli, lib = min(results[f"cli {name}"]), min(results[f"lib {name}"])
        print(
            f"create ({name:19}) by hand {ref:6.2f}s | pct create cli {cli:6.2f}s"
            f" ratio {ref / cli:.2f} | operation {lib:6.2f}s ratio {ref / lib:.2f}"
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
    precompile()
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
