"""safefile.fresh_dir: an empty private directory, never made through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import CtkitError
from shared.safefile import fresh_dir


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
