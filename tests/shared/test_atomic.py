from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import atomic
from tests.midway import stopped_midway


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


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of its own."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_failed_write_is_one_line_and_keeps_the_old_file(small_fs: Path, how: str) -> None:
    target = small_fs / "a.conf"
    target.write_text("old\n")
    if how == "full":
        with open(small_fs / "fill", "wb") as fh, contextlib.suppress(OSError):
            fh.write(bytes(1 << 20))
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(atomic.WriteError) as err:
        atomic.write_text(target, "new\n" * 10000)
    reason = os.strerror(errno.ENOSPC if how == "full" else errno.EROFS)
    assert str(err.value) == f"unable to write '{target}': {reason}"
    assert isinstance(err.value, OSError) and err.value.errno in (errno.ENOSPC, errno.EROFS)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in small_fs.iterdir() if p.name != "fill") == ["a.conf"]


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


# -- a writer killed mid-write -------------------------------------------------------------------

WRITER = """
import sys, time
from shared import atomic
with atomic.atomic_open(sys.argv[1]) as fh:
    fh.write(b"half")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def _writer(target: Path) -> subprocess.Popen[str]:
    """A process stopped in the middle of an atomic write of ``target``."""
    proc, line = stopped_midway(WRITER, str(target))
    assert line == "writing"
    return proc


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def fresh_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a new command: no directory swept yet."""
    monkeypatch.setattr(atomic, "_swept", set())


def test_a_killed_writers_temp_file_goes_at_the_next_write(
    tmp_path: Path, fresh_sweep: None
) -> None:
    target = tmp_path / "900000100.conf"
    target.write_text("old\n")
    proc = _writer(target)
    proc.kill()
    proc.wait()
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".900000100.conf.{proc.pid}-"), left
    assert target.read_text() == "old\n"
    atomic.write_text(tmp_path / "other.conf", "x\n")  # any write into the directory
    assert _temps(tmp_path) == []
    assert target.read_text() == "old\n"


def test_a_live_writers_temp_file_stays(tmp_path: Path, fresh_sweep: None) -> None:
    target = tmp_path / "a.conf"
    proc = _writer(target)
    try:
        atomic.write_text(tmp_path / "b.conf", "x\n")
        assert len(_temps(tmp_path)) == 1
    finally:
        proc.kill()
        proc.wait()


def test_a_temp_file_held_locked_stays_whatever_its_pid(tmp_path: Path, fresh_sweep: None) -> None:
    """A writer in another pid namespace: its pid means nothing here, its lock does."""
    held = tmp_path / ".a.conf.999999999-0123abcd.tmp"
    held.write_bytes(b"half")
    dead = tmp_path / ".b.conf.999999999-4567cdef.tmp"
    dead.write_bytes(b"half")
    with open(held, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        atomic.write_text(tmp_path / "c.conf", "x\n")
    assert _temps(tmp_path) == [held.name]


def test_only_temp_files_of_atomic_writes_are_swept(tmp_path: Path, fresh_sweep: None) -> None:
    keep = [".a.conf.0123456789ab.tmp", "a.tmp", ".a.conf.999999999-0123abcg.tmp", "b.tmp"]
    for name in keep[:3]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "b.tmp").symlink_to(tmp_path / "real")
    link = tmp_path / ".c.conf.999999999-0123abcd.tmp"
    link.symlink_to(tmp_path / "real")
    atomic.write_text(tmp_path / "d.conf", "x\n")
    assert _temps(tmp_path) == sorted([*keep, link.name])
    assert (tmp_path / "real").exists()


def test_a_directory_is_swept_once_per_process(tmp_path: Path, fresh_sweep: None) -> None:
    atomic.write_text(tmp_path / "a.conf", "x\n")
    stale = tmp_path / ".a.conf.999999999-0123abcd.tmp"
    stale.write_bytes(b"half")
    atomic.write_text(tmp_path / "a.conf", "y\n")  # the same command saves again
    assert stale.exists()
