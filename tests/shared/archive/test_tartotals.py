"""tar's totals line as GNU tar writes it: the sizes in brackets are checked against real tar."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from shared.archive.tartotals import human_size, totals_line

# at the edges of the rounding: 2.05 MiB, 9.95 MiB (up to 10), 1023.5 KiB (up to 1.0 MiB) ...
SIZES = [
    10240,
    706560,
    1048064,
    1048576,
    2150400,
    10433024,
    10485760,
    11010048,
    211896320,
    1073741312,
]


def _archive(path: Path, total: int) -> None:
    """A sparse archive of exactly ``total`` bytes: one member, then the two zero blocks."""
    info = tarfile.TarInfo("f")
    info.size = total - 3 * 512
    with open(path, "wb") as fh:
        fh.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        fh.truncate(total)


@pytest.mark.parametrize("total", SIZES)
def test_size_is_written_as_gnu_tar_writes_it(tmp_path: Path, total: int) -> None:
    _archive(tmp_path / "a.tar", total)
    # one-block records: tar counts exactly the archive's bytes
    out = subprocess.run(
        ["tar", "-t", "-b", "1", "--totals", "-f", str(tmp_path / "a.tar")],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    )
    match = re.search(r"^Total bytes read: (\d+) \(([^,]+), ", out.stderr, re.M)
    assert match, out.stderr
    assert (int(match[1]), match[2]) == (total, human_size(total))


def test_small_counts_and_the_rate() -> None:
    assert human_size(0) == "0B" and human_size(1023) == "1023B" and human_size(1024) == "1.0KiB"
    # 2,150,400 bytes in 12.5 ms: 164.06 MiB/s, rounded up
    assert totals_line("Total bytes read", 2150400, 0.0125) == (
        "Total bytes read: 2150400 (2.1MiB, 165MiB/s)"
    )
    assert totals_line("Total bytes read", 10240, 0.0) == "Total bytes read: 10240 (10KiB, ?/s)"
