"""safefile: an empty private directory, never made through a link; a copy that is whole or
absent under its name."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.errors import CtkitError
from shared.safefile import copy_file, fresh_dir, remove_tree


def test_a_leftover_directory_is_emptied_and_parents_are_made(tmp_path: Path) -> None:
    path = tmp_path / "a/b/tmp"
    fresh_dir(path)
    (path / "left").write_text("over")
    fresh_dir(path, 0o750)
    assert list(path.iterdir()) == [] and (os.stat(path).st_mode & 0o777) == 0o750


def test_a_link_or_file_under_the_name_is_refused_and_left(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "file").write_text("y")
    with pytest.raises(CtkitError, match=r"it is a symbolic link$"):
        fresh_dir(tmp_path / "link")
    with pytest.raises(CtkitError, match=r"not a directory$"):
        fresh_dir(tmp_path / "file")
    assert (victim / "keep").read_text() == "x" and (tmp_path / "file").read_text() == "y"


def test_a_directory_that_cannot_be_made_is_one_error_line() -> None:
    """``vzdump --tmpdir /proc`` reported a Python exception's name and errno as the error."""
    with pytest.raises(CtkitError) as info:
        fresh_dir(Path("/proc/ctkit-no-such-dir"))
    assert str(info.value) == (
        "unable to create directory '/proc/ctkit-no-such-dir' - No such file or directory"
    )


def test_a_copy_cut_short_leaves_nothing_under_the_final_name(
    tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    """A log copied into a full dump directory stayed as an empty file under its final name,
    beside a backup that said it had finished successfully, and retention never removed it."""
    tiny_fs = mount_tmpfs(tmp_path / "tiny", "64k")
    src = tmp_path / "big.log"
    src.write_bytes(b"x" * (1 << 20))
    with pytest.raises(OSError):
        copy_file(src, tiny_fs / "vzdump.log")
    assert list(tiny_fs.iterdir()) == []
    small = tmp_path / "small.log"
    small.write_text("whole\n")
    copy_file(small, tiny_fs / "vzdump.log")
    assert (tiny_fs / "vzdump.log").read_text() == "whole\n"
    assert [p.name for p in tiny_fs.iterdir()] == ["vzdump.log"]


def test_a_copy_refuses_a_link_at_the_name_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "copy.log").symlink_to(victim)
    (tmp_path / "src").write_text("log\n")
    with pytest.raises(CtkitError, match=r"it is a symbolic link$"):
        copy_file(tmp_path / "src", tmp_path / "copy.log")
    assert victim.read_text() == "keep\n" and (tmp_path / "copy.log").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.log", "src", "victim"]


def deep_tree(top: Path, depth: int = 1500) -> None:
    """``top`` with a chain of ``depth`` directories below it, and a file at the bottom."""
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def test_a_tree_of_any_depth_is_removed(tmp_path: Path) -> None:
    """shutil.rmtree raised RecursionError below about 1000 levels (ignore_errors or not): a
    container's volume holding such a tree could never be freed."""
    deep_tree(tmp_path / "vol")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (tmp_path / "vol/link").symlink_to(outside)
    remove_tree(tmp_path / "vol")
    assert not (tmp_path / "vol").exists() and (outside / "keep").read_text() == "x"
    remove_tree(tmp_path / "vol")  # missing: no error
    deep_tree(tmp_path / "rel")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        remove_tree("rel", dir_fd=fd)
    finally:
        os.close(fd)
    assert not (tmp_path / "rel").exists()


def test_a_tree_that_cannot_be_removed_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "vol/sub").mkdir(parents=True)
    subprocess.run(["chattr", "+i", str(tmp_path / "vol/sub")], check=True)
    try:
        with pytest.raises(OSError, match="Operation not permitted"):
            remove_tree(tmp_path / "vol")
        remove_tree(tmp_path / "vol", ignore_errors=True)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "vol/sub")], check=True)
