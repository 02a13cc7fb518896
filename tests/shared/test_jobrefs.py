from __future__ import annotations

from pathlib import Path

from shared import jobrefs, paths

JOBS = """vzdump: nightly
\tschedule sat 02:00
\tvmid 100,900000001,102
\tstorage local

vzdump: only-that-one
\tschedule daily
\tvmid 900000001

vzdump: all
\tschedule daily
\tall 1
"""


def test_remove_guest_from_jobs(ctroot: Path) -> None:
    path = paths.jobs_cfg()
    path.parent.mkdir(parents=True)
    path.write_text(JOBS)
    assert jobrefs.remove_guest(900000001) == ["nightly", "only-that-one"]
    assert path.read_text() == (
        "vzdump: nightly\n\tschedule sat 02:00\n\tvmid 100,102\n\tstorage local\n\n"
        "vzdump: all\n\tschedule daily\n\tall 1\n"
    )
    assert jobrefs.remove_guest(900000001) == []


def test_no_jobs_file(ctroot: Path) -> None:
    assert jobrefs.remove_guest(100) == []


def test_remove_guest_from_exclude_lists(ctroot: Path) -> None:
    """An `all 1` job keeps no exclusion of a destroyed guest: a new guest given its id later
    would be left out of the backups without a word. A job naming its guests keeps its
    exclude line as it is, as Proxmox's does."""
    path = paths.jobs_cfg()
    path.parent.mkdir(parents=True)
    path.write_text(
        "vzdump: all\n\tschedule daily\n\tall 1\n\texclude 100,900000001\n\tstorage local\n\n"
        "vzdump: last\n\tschedule daily\n\tall 1\n\texclude 900000001\n\n"
        "vzdump: named\n\tschedule daily\n\tvmid 100\n\texclude 900000001\n\n"
        "vzdump: other\n\tschedule daily\n\tall 1\n\texclude 9000000011\n"
    )
    assert jobrefs.remove_guest(900000001) == ["all", "last"]
    assert path.read_text() == (
        "vzdump: all\n\tschedule daily\n\tall 1\n\texclude 100\n\tstorage local\n\n"
        "vzdump: last\n\tschedule daily\n\tall 1\n\n"
        "vzdump: named\n\tschedule daily\n\tvmid 100\n\texclude 900000001\n\n"
        "vzdump: other\n\tschedule daily\n\tall 1\n\texclude 9000000011\n"
    )
