"""The archive bench's child really creates and extracts through the runtime library: a
rename in shared/archive must break this test, not the next `make bench` run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "archive_bench.py"


def child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_the_child_creates_and_extracts_a_tree(tmp_path: Path) -> None:
    src, cfg, dest = tmp_path / "src", tmp_path / "cfg", tmp_path / "dest"
    for d in (src / "d", cfg, dest):
        d.mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"payload" * 1000)
    archive = tmp_path / "a.tar.zst"
    made = child("create", str(cfg), str(src), str(archive), "2")
    assert made["seconds"] > 0 and archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    child("extract", str(archive), str(dest))
    assert (dest / "d" / "f").read_bytes() == b"payload" * 1000
