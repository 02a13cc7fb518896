"""Benchmark the interactive commands as whole processes (not a test).

    .venv/bin/python bench/cli_bench.py [--reps 10] [--dir /var/tmp]

Target (DESIGN.md, Performance): ``pct status``, ``pct config``, ``pct list`` (10 containers),
``pveam list local``, ``vzdump job list`` and ``--help`` of every command answer in at most
0.15 s wall, measured as whole processes: the console script in a fresh interpreter, in a
scratch CTKIT_ROOT with ten configured containers (stopped), a template in storage ``local``
and two backup jobs.

Each command runs ``--reps`` times, interleaved with a bare ``python -c pass`` of the same
interpreter (the floor every command pays), and its median wall time is recorded as bench
``cli`` with ratio = 0.15 s / median (>= 1.0 meets the target, ``bench/results.py``). The
``--help`` of every command and sub-command of the three apps is one figure: the slowest of
their medians (each help runs ``--reps`` times, at most 5). The sources are byte-compiled
first, as an install does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.compiled import precompile  # noqa: E402
from bench.results import record  # noqa: E402

BIN = Path(sys.executable).parent
TARGET_S = 0.15
FIRST_VMID = 900000950
CONTAINERS = 10
HELP_REPS_MAX = 5

CONFIG = """\
arch: amd64
cores: 1
hostname: bench{n}
memory: 512
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:{n:02X},ip=dhcp,type=veth
ostype: debian
rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=4G
swap: 512
unprivileged: 1
"""
JOBS = """\
vzdump: nightly
\tschedule 02:30
\tall 1
\tmode snapshot
\tstorage local
\tenabled 1

vzdump: weekly
\tschedule sat 03:00
\tvmid {vmid}
\tmode stop
\tenabled 0
"""


def make_root(path: Path) -> None:
    """A CTKIT_ROOT with ten stopped containers, a template and two jobs."""
    conf_dir = path / "etc/pve/lxc"
    conf_dir.mkdir(parents=True)
    for n in range(CONTAINERS):
        vmid = FIRST_VMID + n
        (conf_dir / f"{vmid}.conf").write_text(CONFIG.format(n=n, vmid=vmid))
    (path / "etc/pve/jobs.cfg").write_text(JOBS.format(vmid=FIRST_VMID))
    cache = path / "var/lib/vz/template/cache"
    cache.mkdir(parents=True)
    (cache / "debian-12-standard_12.7-1_amd64.tar.zst").write_bytes(b"\0" * 4096)


def commands() -> list[tuple[str, list[str]]]:
    vmid = str(FIRST_VMID)
    return [
        ("pct status", ["pct", "status", vmid]),
        ("pct config", ["pct", "config", vmid]),
        ("pct list", ["pct", "list"]),
        ("pveam list local", ["pveam", "list", "local"]),
        ("vzdump job list", ["vzdump", "job", "list"]),
    ]


def help_commands() -> Iterator[list[str]]:
    """Every command and sub-command of the three apps (visible ones), as argv + --help."""
    import typer

    from pct.cli import app as pct_app
    from pveam.cli import app as pveam_app
    from vzdump.cli import app as vzdump_app

    def walk(cmd: Any, path: list[str]) -> Iterator[list[str]]:
        yield [*path, "--help"]
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*path, name])

    for prog, app in (("pct", pct_app), ("pveam", pveam_app), ("vzdump", vzdump_app)):
        yield from walk(typer.main.get_command(app), [prog])


def wall(argv: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.decode()}")
    return seconds


def measure(argv: list[str], env: dict[str, str], reps: int) -> tuple[float, float]:
    """Medians of (the command, bare python), run alternately."""
    bare = [sys.executable, "-c", "pass"]
    ours, floor = [], []
    for _ in range(reps):
        ours.append(wall([str(BIN / argv[0]), *argv[1:]], env))
        floor.append(wall(bare, env))
    return statistics.median(ours), statistics.median(floor)


def report(metric: str, median: float, python_s: float, **extra: Any) -> None:
    verdict = "ok" if median <= TARGET_S else "SLOW"
    print(f"{metric:<22} {median * 1000:7.1f} ms  (python -c pass {python_s * 1000:5.1f} ms) "
          f"{verdict}")  # fmt: skip
    record("cli", metric, TARGET_S / median, median_s=median, python_s=python_s,
           target_s=TARGET_S, **extra)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--reps", type=int, default=10)
    opts = parser.parse_args()
    reps = max(1, opts.reps)
    precompile()
    work = Path(tempfile.mkdtemp(prefix="ctkit-cli-bench-", dir=opts.dir))
    env = {**os.environ, "CTKIT_ROOT": str(work / "root")}
    env.pop("CTKIT_SCHEDULER_NOW", None)
    try:
        make_root(work / "root")
        for metric, argv in commands():
            report(metric, *measure(argv, env, reps))
        helps = list(help_commands())
        medians = [(measure(argv, env, min(reps, HELP_REPS_MAX)), argv) for argv in helps]
        (slowest, python_s), argv = max(medians)
        typical = statistics.median(m for (m, _p), _a in medians)
        report("--help (slowest)", slowest, python_s, commands=len(helps),
               slowest=" ".join(argv[:-1]), median_of_all_s=typical)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
