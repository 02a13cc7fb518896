"""extract()'s ``select`` and ``stop_when``: tar gets only the chosen members (the guard still
sees every one), and the read ends once the chosen ones are out (``vzdump extract``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from shared.archive.tarextract import extract
from shared.archive.tarformat import Member
from shared.archive.tarscan import ScanSink
from shared.errors import ArchiveError
from tests.shared.archive import rawtar
from tests.shared.archive.conftest import make_root

# after the chosen member: more than the reader thread reads ahead (a few 1 MiB chunks)
BIG = os.urandom(1 << 20) * 24


class Pick(ScanSink):
    """Takes the members named in ``names``; ``done`` once all of them have ended."""

    def __init__(self, *names: bytes) -> None:
        self.names = set(names)
        self.ended: set[bytes] = set()

    def member(self, member: Member) -> bool:
        return member.name in self.names

    def member_end(self, member: Member) -> None:
        self.ended.add(member.name)

    @property
    def done(self) -> bool:
        return self.ended == self.names


def _archive() -> bytes:
    return rawtar.archive(
        rawtar.directory(b"./"),
        rawtar.member(b"./a.txt", b"alpha"),
        rawtar.member(b"./b.txt", b"beta"),
        rawtar.member(b"./big.bin", BIG),
        rawtar.member(b"./z.txt", b"zulu"),
    )


def test_select_with_stop_reads_no_further_than_needed(wtmp: Path) -> None:
    data = _archive()
    root = make_root(wtmp / "root")
    pick = Pick(b"./b.txt")
    stats = extract(
        io.BytesIO(data), root, compression=None, select=pick, stop_when=lambda: pick.done
    )
    assert stats.stopped_early
    assert sorted(p.name for p in root.iterdir()) == ["b.txt"]
    assert (root / "b.txt").read_text() == "beta"
    assert stats.bytes_in < len(data) // 2  # the big member was not read through


def test_select_without_stop_reads_to_the_end(wtmp: Path) -> None:
    data = _archive()
    root = make_root(wtmp / "root")
    pick = Pick(b"./a.txt", b"./z.txt")
    stats = extract(io.BytesIO(data), root, compression=None, select=pick)
    assert not stats.stopped_early
    assert stats.bytes_in == len(data)
    assert sorted(p.name for p in root.iterdir()) == ["a.txt", "z.txt"]


def test_stop_never_true_extracts_everything(wtmp: Path) -> None:
    root = make_root(wtmp / "root")
    stats = extract(io.BytesIO(_archive()), root, compression=None, stop_when=lambda: False)
    assert not stats.stopped_early
    assert sorted(p.name for p in root.iterdir()) == ["a.txt", "b.txt", "big.bin", "z.txt"]
    assert (root / "big.bin").read_bytes() == BIG


def test_guard_sees_members_select_would_not_take(wtmp: Path) -> None:
    # the hostile member comes before the chosen one and is never selected: still refused
    data = rawtar.archive(
        rawtar.symlink(b"./esc", b"/etc"),
        rawtar.member(b"./esc/owned", b"x"),
        rawtar.member(b"./b.txt", b"beta"),
    )
    root = make_root(wtmp / "root")
    pick = Pick(b"./b.txt")
    with pytest.raises(ArchiveError):
        extract(io.BytesIO(data), root, compression=None, select=pick, stop_when=lambda: pick.done)
    assert not (root / "b.txt").exists()
