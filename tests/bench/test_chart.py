"""bench.chart renders a PNG of the ratios (skipped without the bench extra, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench import chart


def test_render_png(tmp_path: Path) -> None:
    data = {
        "started": "2030-01-05T10:00:00+00:00",
        "host": {"cpus": 2},
        "results": [
            {"name": "archive", "metric": "create", "ratio": 0.95, "figures": {}},
            {"name": "pveam-download", "metric": "100MiB", "ratio": 0.8, "figures": {}},
            {"name": "pct", "metric": "frozen", "ratio": None, "figures": {"ms": 40}},
        ],
    }
    assert [(label, target) for label, _r, target in chart.bars(data)] == [
        ("archive: create", 0.9),
        ("pveam-download: 100MiB", 1.0),
    ]
    out = chart.render(data, tmp_path / "charts/ratios.png")
    assert out == tmp_path / "charts/ratios.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert sorted(p.name for p in out.parent.iterdir()) == ["ratios.png"]  # no temp file left
    assert chart.render({"results": data["results"][2:]}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
