"""pct.ops.volcopy: the tree copy under full clones and move-volume (end to end in
tests/pct/test_clone.py and test_move_volume.py); here its progress and its log line."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops.volcopy import _watching, copy_tree
from shared.tasklog import Progress


@pytest.fixture
def tmpfs(tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]) -> Path:
    return mount_tmpfs(tmp_path / "dst", "16m")


def test_progress_follows_what_the_target_file_system_gained(tmpfs: Path) -> None:
    with (
        Progress("copy", 4 << 20, stream=io.StringIO()) as prog,
        _watching(tmpfs, prog, interval=0.05),
    ):
        (tmpfs / "data").write_bytes(b"d" * (3 << 20))
        deadline = time.monotonic() + 5
        while prog.done < 3 << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert 3 << 20 <= prog.done < 4 << 20


def test_copy_tree_copies_and_says_how_much(tmp_path: Path, tmpfs: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("ct\n")
    (src / "blob").write_bytes(b"b" * 300_000)
    (src / "etc/link").symlink_to("hostname")
    lines: list[str] = []
    copy_tree(src, tmpfs, log=lines.append)
    assert (tmpfs / "etc/hostname").read_text() == "ct\n"
    assert (tmpfs / "blob").stat().st_size == 300_000
    assert (tmpfs / "etc/link").readlink() == Path("hostname")
    assert len(lines) == 1 and lines[0].startswith("copied 3"), lines  # about 300 KiB
