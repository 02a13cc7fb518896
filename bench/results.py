"""Where the benchmarks put their figures: ``bench/results/latest.json``.

Each bench script calls :func:`record` once per measured ratio, where it prints it::

    record("archive", "create", 0.97, ours_s=2.1, reference_s=2.04, peak_rss_mib=41.2)

``ratio`` is reference time / ctkit time (1.0 = as fast; ``None`` for a figure without a
reference, such as a frozen window); the keyword figures are free-form numbers or strings. A
figure may carry the target itself (``target=0.9``); otherwise :data:`TARGETS` gives it.
``python -m bench.run`` starts a fresh file (:func:`reset`) and reads it back for its summary and
the chart; a script run on its own appends to whatever file is there. Appends are atomic and
serialised by an flock, so a crash or a parallel script never leaves a torn file. The env
``CTKIT_BENCH_RESULTS`` points the whole thing at another file (the tests use it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from shared import atomic, locks

RESULTS_ENV = "CTKIT_BENCH_RESULTS"
DEFAULT_PATH = Path(__file__).resolve().parent / "results" / "latest.json"
VERSION = 1
LOCK_TIMEOUT = 30.0

# DESIGN.md's Performance table, as (bench name, metric) -> minimum ratio; metric "*" is any
# metric of that bench. vzdump and restore rest on the archive layer, so its create/extract
# pipelines get the same 0.9 as the tools.
TARGETS: dict[tuple[str, str], float] = {
    ("archive", "create"): 0.9,  # tar --numeric-owner -cf - . | zstd -T<n>
    ("archive", "extract"): 0.9,  # zstd -dc archive | tar -xf -
    ("vzdump", "*"): 0.95,  # vzdump stop mode, zstd vs tar | zstd -T<same threads>
    ("restore", "*"): 0.9,  # pct restore vs zstd -dc | tar -xf -
    ("pct", "create"): 0.9,  # pct create vs the same work by hand in one shell pipeline
    ("pveam-download", "*"): 1.0,  # pveam download vs curl -o f && sha512sum f
    ("parallel", "*"): round(1 / 0.65, 3),  # one worker's time / two workers' (<= 0.65x)
    # interactive commands (pct status/config/list, pveam list, vzdump job list, --help):
    # <= 0.15 s wall as a whole process; recorded as 0.15 s / median wall time
    ("cli", "*"): 1.0,
}
# "peak RSS under 150 MB whatever the container or archive size": checked on every figure
# named peak_rss_mib (the ctkit process itself, not tar)
RSS_FIGURE = "peak_rss_mib"
RSS_LIMIT_MIB = 150e6 / 2**20


def results_path() -> Path:
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else DEFAULT_PATH


def _lock_path(path: Path) -> Path:
    """Beside the results file (hidden, git-ignored), so a test's scratch results file takes
    its lock file along when its directory goes."""
    return path.with_name(f".{path.name}.lock")


def _now() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


def _fresh() -> dict[str, Any]:
    return {
        "version": VERSION,
        "started": _now(),
        "host": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "results": [],
    }


def load(path: Path | None = None) -> dict[str, Any]:
    """The results file, or an empty run when it is missing or unreadable."""
    try:
        data = json.loads((path or results_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _fresh()
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        return _fresh()
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def reset(path: Path | None = None) -> Path:
    """Start a new run: an empty results file (host details, start time)."""
    path = path or results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.flock(_lock_path(path), LOCK_TIMEOUT):
        _write(path, _fresh())
    return path


def record(name: str, metric: str, ratio: float | None, **figures: Any) -> None:
    """Append one measurement to the results file (atomically, under its lock)."""
    if ratio is not None and not (isinstance(ratio, int | float) and ratio >= 0):
        raise ValueError(f"ratio must be a non-negative number or None, not {ratio!r}")
    entry = {
        "name": name,
        "metric": metric,
        "ratio": None if ratio is None else round(float(ratio), 4),
        "figures": {k: _plain(v) for k, v in figures.items()},
        "time": _now(),
    }
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with locks.flock(_lock_path(path), LOCK_TIMEOUT):
        data = load(path)
        data["results"].append(entry)
        _write(path, data)


def _plain(value: Any) -> Any:
    """Figures as JSON numbers/strings; floats rounded so the file stays readable."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return round(value, 4)
    return str(value)


def target_of(entry: dict[str, Any]) -> float | None:
    """The minimum ratio a measurement should reach, if there is one."""
    figures = entry.get("figures", {})
    own = figures.get("target")
    if isinstance(own, int | float) and not isinstance(own, bool):
        return float(own)
    if "target" in figures:  # an explicit null: a ratio reported without a target
        return None
    name, metric = entry.get("name", ""), entry.get("metric", "")
    return TARGETS.get((name, metric), TARGETS.get((name, "*")))


def latest_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (name, metric), the last recorded, in first-recorded order."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in data.get("results", []):
        # re-assigning a key keeps its first position: later runs replace, order stays
        last[(str(entry.get("name")), str(entry.get("metric")))] = entry
    return list(last.values())


__all__ = [
    "RESULTS_ENV",
    "RSS_FIGURE",
    "RSS_LIMIT_MIB",
    "TARGETS",
    "latest_entries",
    "load",
    "record",
    "reset",
    "results_path",
    "target_of",
]
