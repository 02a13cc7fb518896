"""Reading a file someone else controls: regular files only, without waiting, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.regularfile import UnreadableFile, read_regular, read_whole


def test_only_regular_files_are_read_and_only_so_far(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"0123456789")
    found = read_regular(plain, 4)
    assert found is not None and found[0] == b"01234" and found[1].st_size == 10
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_regular(fifo, 4) is None  # returns at once: nobody writes to it
    assert read_regular(Path("/dev/zero"), 4) is None
    assert read_regular(tmp_path, 4) is None
    assert read_regular(tmp_path / "missing", 4) is None
    assert read_regular(plain / "below", 4) is None


def test_read_whole_tells_absent_other_and_too_large(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"0123456789")
    assert read_whole(plain, 10) == b"0123456789"
    with pytest.raises(UnreadableFile, match=r"^is too large \(more than 9 bytes\)$"):
        read_whole(plain, 9)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnreadableFile, match=r"^is not a regular file$"):
        read_whole(tmp_path / "fifo", 10)
    with pytest.raises(FileNotFoundError):
        read_whole(tmp_path / "missing", 10)
