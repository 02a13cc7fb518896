"""The rsync options of a migration's copy passes, run for real between two directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pct.ops.migrate_link import RSYNC_OPTS


def test_the_final_pass_sees_a_rewrite_within_the_same_second(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    state = src / "state.dat"
    state.write_bytes(b"v0001462")
    second = 1_800_000_000
    os.utime(state, ns=(second * 10**9, second * 10**9 + 1000))
    subprocess.run(["rsync", *RSYNC_OPTS, f"{src}/", str(dst)], check=True, capture_output=True)
    state.write_bytes(b"FINAL!!!")  # same size, same second: only the nanoseconds differ
    os.utime(state, ns=(second * 10**9, second * 10**9 + 2000))
    subprocess.run(["rsync", *RSYNC_OPTS, f"{src}/", str(dst)], check=True, capture_output=True)
    assert (dst / "state.dat").read_bytes() == b"FINAL!!!"
