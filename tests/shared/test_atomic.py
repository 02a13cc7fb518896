from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared import atomic


def test_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    atomic.write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]


def test_failure_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.conf"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash in the middle")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]


def test_fixed_temp_name_removes_stale(tmp_path: Path) -> None:
    target = tmp_path / "x.tar.zst"
    (tmp_path / "x.tar.dat").write_bytes(b"stale")
    with atomic.atomic_open(target, tmp_name="x.tar.dat") as fh:
        assert (tmp_path / "x.tar.dat").exists()
        fh.write(b"data")
    assert target.read_bytes() == b"data"
    assert not (tmp_path / "x.tar.dat").exists()


def test_new_file_default_mode_and_parent_created(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "f"
    atomic.write_bytes(target, b"x")
    assert (target.stat().st_mode & 0o777) == 0o644


def test_commit_file_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    """vzdump's final rename: an archive that exists under the name is never replaced."""
    final = tmp_path / "a.tar.zst"
    final.write_bytes(b"first")
    tmp = tmp_path / "a.tar.dat"
    tmp.write_bytes(b"second")
    with pytest.raises(FileExistsError):
        atomic.commit_file(tmp, final, overwrite=False)
    assert final.read_bytes() == b"first" and tmp.read_bytes() == b"second"
    final.unlink()
    atomic.commit_file(tmp, final, overwrite=False)
    assert final.read_bytes() == b"second" and not tmp.exists()
