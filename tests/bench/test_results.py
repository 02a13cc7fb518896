"""bench.results: atomic appends (also from parallel processes), resets, targets."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from bench import results


@pytest.fixture
def latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "results" / "latest.json"
    monkeypatch.setenv(results.RESULTS_ENV, str(path))
    return path


def test_record_appends_to_a_fresh_file(latest: Path) -> None:
    results.record("archive", "create", 0.97123456, ours_s=2.0, label="x", odd=Path("/p"))
    results.record("archive", "extract", None, seconds=1)
    data = json.loads(latest.read_text())
    assert data["version"] == 1 and data["host"]["cpus"] >= 1
    first, second = data["results"]
    assert (first["name"], first["metric"], first["ratio"]) == ("archive", "create", 0.9712)
    assert first["figures"] == {"ours_s": 2.0, "label": "x", "odd": "/p"}
    assert (second["ratio"], second["figures"]) == (None, {"seconds": 1})
    # no temp file left; the lock lives beside the results (hidden, git-ignored)
    assert sorted(p.name for p in latest.parent.iterdir()) == [".latest.json.lock", "latest.json"]


def test_reset_and_unreadable_files(latest: Path) -> None:
    results.record("a", "m", 1.0)
    results.reset()
    assert json.loads(latest.read_text())["results"] == []
    latest.write_text("{ torn")
    assert results.load()["results"] == []
    results.record("a", "m", 1.5)
    assert [e["ratio"] for e in results.load()["results"]] == [1.5]


def test_bad_ratio_is_refused(latest: Path) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        results.record("a", "m", -1.0)
    assert not latest.exists()


def _record_many(worker: int) -> None:
    for i in range(10):
        results.record("par", f"w{worker}-{i}", 1.0)


def test_parallel_writers_lose_nothing(latest: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(w,)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    metrics = sorted(e["metric"] for e in results.load()["results"])
    assert metrics == sorted(f"w{w}-{i}" for w in range(4) for i in range(10))


def test_targets_and_latest_entries() -> None:
    def entry(name: str, metric: str, ratio: float, **figures: object) -> dict[str, object]:
        return {"name": name, "metric": metric, "ratio": ratio, "figures": figures}

    assert results.target_of(entry("archive", "create", 1)) == 0.9
    assert results.target_of(entry("pveam-download", "500MiB", 1)) == 1.0
    assert results.target_of(entry("restore", "anything", 1)) == 0.9
    assert results.target_of(entry("cli", "pct status", 1)) == 1.0
    assert results.target_of(entry("pct", "start-stop", 1)) is None
    assert results.target_of(entry("pct", "start-stop", 1, target=0.5)) == 0.5
    data = {"results": [entry("a", "x", 1), entry("b", "y", 2), entry("a", "x", 3)]}
    assert [(e["name"], e["ratio"]) for e in results.latest_entries(data)] == [("a", 3), ("b", 2)]
