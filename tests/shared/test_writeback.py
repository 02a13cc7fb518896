"""``start_writeback``: the kernel takes the request on a file, and nothing breaks elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.writeback import start_writeback


def test_a_written_range_is_handed_to_the_disk(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as fh:
        fh.write(os.urandom(1 << 20))
        fh.flush()
        assert start_writeback(fh.fileno(), 0, 1 << 20)
        assert not start_writeback(fh.fileno(), 0, 0)  # nothing to do


def test_a_pipe_is_refused_without_an_error() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"x")
        assert not start_writeback(write, 0, 1)
    finally:
        os.close(read)
        os.close(write)


def test_ctypes_is_loaded_at_the_first_call_not_with_the_downloader() -> None:
    code = (
        "import sys, shared.http\n"
        "assert 'ctypes' not in sys.modules\n"
        "from shared.writeback import start_writeback\n"
        "start_writeback(0, 0, 1)\n"
        "assert 'ctypes' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
