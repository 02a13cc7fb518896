"""bench.run with stand-in bench scripts: discovery, --quick options read from --help, the
summary against targets, and the exit status when a script fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results, run

REPO = Path(__file__).resolve().parents[2]
RECORDING = f"""
import argparse, sys
sys.path.insert(0, {str(REPO)!r})
from bench.results import record
parser = argparse.ArgumentParser()
parser.add_argument("--reps", type=int, default=5)
opts = parser.parse_args()
print("argv", sys.argv[1:])
record("archive", "create", 0.5, reps=opts.reps, peak_rss_mib=200.0)
record("archive", "extract", 1.25, reps=opts.reps, peak_rss_mib=30.0)
"""
FAILING = "import sys\nprint('boom')\nsys.exit(4)\n"


@pytest.fixture
def benches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    (bench_dir / "archive_bench.py").write_text(RECORDING)
    (bench_dir / "zz_extra_bench.py").write_text(FAILING)
    for helper in ("run.py", "results.py", "chart.py", "compiled.py", "__init__.py"):
        (bench_dir / helper).write_text("raise SystemExit('must not run')\n")
    monkeypatch.setattr(run, "BENCH_DIR", bench_dir)
    monkeypatch.setattr(run, "REPO", tmp_path)
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path / "out/latest.json"))
    return bench_dir


def test_discover_orders_known_scripts_first(benches: Path) -> None:
    assert [(s.name, s.path.name) for s in run.discover()] == [
        ("archive", "archive_bench.py"),
        ("zz-extra", "zz_extra_bench.py"),
    ]


def test_quick_run_summary_and_exit_status(
    benches: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(["--quick"]) == 1  # the extra script failed
    out = capsys.readouterr().out
    # only the options the script's --help lists are passed
    assert "=== archive: bench/archive_bench.py --reps 2\n" in out
    assert "=== zz-extra: bench/zz_extra_bench.py\n" in out
    summary = out.split("=== summary", 1)[1].splitlines()
    assert summary[1:4] == [
        "bench    metric   ratio  target   verdict  figures",
        "archive  create   0.50   >= 0.90  BELOW    reps=2 peak_rss_mib=200",
        "archive  extract  1.25   >= 0.90  ok       reps=2 peak_rss_mib=30",
    ]
    summary = "\n".join(summary)
    assert "peak RSS: 200.0 MiB (archive/create), limit 143.1 MiB (150 MB): OVER" in summary
    assert "  zz-extra: FAILED (exit 4) in " in summary and ", recorded no figures" in summary
    data = json.loads((tmp_path / "out/latest.json").read_text())
    assert [e["metric"] for e in data["results"]] == ["create", "extract"]


def test_only_and_strict(benches: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--only", "archive"]) == 0
    assert run.main(["--only", "archive", "--strict"]) == 3  # 0.5 < 0.9, RSS over
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])
    assert "no such bench: nope" in capsys.readouterr().err
