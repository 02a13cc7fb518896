"""Run every benchmark that exists, one after another, then summarise and chart the ratios.

    python -m bench.run [--quick] [--only archive,pveam-download] [--strict]

Starts a fresh ``bench/results/latest.json`` (:mod:`bench.results`), runs each bench script in
its own process (its output goes straight to the terminal), then prints one row per recorded
ratio against its target from DESIGN.md's Performance table, the peak RSS against the 150 MB
limit, and how each script ended; last it renders ``bench/results/ratios.png``
(:mod:`bench.chart`, needs the ``bench`` extra: matplotlib).

``--quick`` runs the scripts on small inputs: of ``--size-mb``, ``--sizes`` and ``--reps`` it
passes those that a script's ``--help`` lists. Exit status: 1 when a script failed, 3 with
``--strict`` when a ratio missed its target or the RSS limit was passed, else 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import results

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# known scripts in their natural order (short ones first); any other bench/*.py runs after them
KNOWN = [
    ("cli", "cli_bench.py"),
    ("archive", "archive_bench.py"),
    ("pveam-download", "pveam_download.py"),
    ("pct", "pct_bench.py"),
    ("vzdump", "vzdump_bench.py"),
    ("restore", "restore_bench.py"),
]
NOT_BENCHES = {"__init__.py", "run.py", "results.py", "chart.py", "compiled.py"}
QUICK_ARGS = {"--size-mb": "96", "--sizes": "64", "--reps": "2"}
DEFAULT_TIMEOUT = 3600.0


@dataclass
class Script:
    name: str
    path: Path


@dataclass
class Outcome:
    script: Script
    argv: list[str]
    rc: int | None  # None: timed out
    seconds: float


def discover() -> list[Script]:
    """The bench scripts present in bench/: the known ones in order, then the rest by name."""
    found = [Script(name, BENCH_DIR / file) for name, file in KNOWN if (BENCH_DIR / file).exists()]
    known_files = {file for _name, file in KNOWN}
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.name not in known_files and path.name not in NOT_BENCHES:
            found.append(Script(path.stem.removesuffix("_bench").replace("_", "-"), path))
    return found


def quick_args(script: Script) -> list[str]:
    """The small-input options this script accepts (read from its ``--help``)."""
    proc = subprocess.run(
        [sys.executable, str(script.path), "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    args: list[str] = []
    for option, value in QUICK_ARGS.items():
        if option in proc.stdout:
            args += [option, value]
    return args


def run_script(script: Script, quick: bool, timeout: float) -> Outcome:
    argv = [sys.executable, str(script.path), *(quick_args(script) if quick else [])]
    shown = " ".join([str(script.path.relative_to(REPO)), *argv[2:]])
    print(f"\n=== {script.name}: {shown}", flush=True)
    env = {**os.environ, results.RESULTS_ENV: str(results.results_path())}
    start = time.monotonic()
    try:
        rc: int | None = subprocess.run(argv, cwd=REPO, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = None
    return Outcome(script, argv, rc, time.monotonic() - start)


# --- the summary ------------------------------------------------------------------------------


def _figures_text(figures: dict[str, Any], limit: int = 72) -> str:
    def show(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    text = " ".join(f"{k}={show(v)}" for k, v in figures.items() if k != "target")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict(ratio: float | None, target: float | None) -> str:
    if ratio is None or target is None:
        return "-"
    return "ok" if ratio >= target else "BELOW"


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for entry in results.latest_entries(data):
        ratio = entry.get("ratio")
        target = None if ratio is None else results.target_of(entry)
        rows.append((
            str(entry.get("name")),
            str(entry.get("metric")),
            "-" if ratio is None else f"{ratio:.2f}",
            "-" if target is None else f">= {target:.2f}",
            verdict(ratio, target),
            _figures_text(entry.get("figures", {})),
        ))  # fmt: skip
    return rows


def table(rows: Sequence[tuple[str, ...]], head: tuple[str, ...]) -> str:
    cells = [head, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]  # fmt: skip
    return "\n".join(lines)


def rss_line(data: dict[str, Any]) -> tuple[str, bool]:
    """The highest recorded peak RSS of a ctkit process against the limit; (text, within)."""
    peaks = [
        (float(e["figures"][results.RSS_FIGURE]), f"{e['name']}/{e['metric']}")
        for e in results.latest_entries(data)
        if isinstance(e.get("figures", {}).get(results.RSS_FIGURE), int | float)
    ]
    if not peaks:
        return "peak RSS: not recorded", True
    peak, where = max(peaks)
    within = peak < results.RSS_LIMIT_MIB
    state = "ok" if within else "OVER"
    limit = f"limit {results.RSS_LIMIT_MIB:.1f} MiB (150 MB)"
    return f"peak RSS: {peak:.1f} MiB ({where}), {limit}: {state}", within


def script_line(outcome: Outcome, data: dict[str, Any]) -> str:
    recorded = sum(1 for e in data.get("results", []) if e.get("name") == outcome.script.name)
    if outcome.rc is None:
        state = "TIMED OUT"
    elif outcome.rc != 0:
        state = f"FAILED (exit {outcome.rc})"
    else:
        state = "ok"
    note = "" if recorded else ", recorded no figures"
    return f"  {outcome.script.name}: {state} in {outcome.seconds:.0f} s{note}"


def print_summary(data: dict[str, Any], outcomes: list[Outcome]) -> bool:
    """Print the summary; returns True when every ratio and the RSS are within target."""
    rows = summary_rows(data)
    print("\n=== summary (ratio = reference time / ctkit time; targets from DESIGN.md)")
    if rows:
        print(table(rows, ("bench", "metric", "ratio", "target", "verdict", "figures")))
    else:
        print("no figures recorded")
    text, rss_ok = rss_line(data)
    print(text)
    print("scripts:")
    for outcome in outcomes:
        print(script_line(outcome, data))
    return rss_ok and all(row[4] != "BELOW" for row in rows)


def render_chart(data: dict[str, Any]) -> None:
    try:
        from bench import chart
    except ImportError as err:
        print(f"chart: not rendered ({err}); install the extra: pip install -e '.[bench]'")
        return
    out = chart.render(data, results.results_path().with_name("ratios.png"))
    print(f"chart: {out}" if out else "chart: no ratios to draw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs, fewer repetitions")
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per script, s")
    opts = parser.parse_args(argv)
    scripts = discover()
    if opts.only:
        wanted = {w.strip() for w in opts.only.split(",") if w.strip()}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            parser.error(f"no such bench: {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.name in wanted]
    path = results.reset()
    print(f"results: {path}")
    outcomes = [run_script(s, opts.quick, opts.timeout) for s in scripts]
    data = results.load()
    within = print_summary(data, outcomes)
    render_chart(data)
    if any(o.rc != 0 for o in outcomes):
        return 1
    return 3 if opts.strict and not within else 0


if __name__ == "__main__":
    sys.exit(main())
