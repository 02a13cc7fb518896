"""Reading the backed-up config and listing members without extracting."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import zstandard

from shared.archive.codecs import Compression
from shared.archive.members import iter_members, list_members, read_first_member
from shared.archive.tarcreate import CreateSpec, create
from shared.errors import ArchiveError
from tests.shared.archive import rawtar
from tests.shared.archive.trees import write_files


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fd")


def test_reads_first_config_and_stops_early(wtmp: Path) -> None:
    cfg = wtmp / "tmpdir"
    write_files(cfg, {"etc/vzdump/pct.conf": b"hostname: first\n", "etc/vzdump/pct.fw": b""})
    snap = wtmp / "snap"
    write_files(snap, {"etc/vzdump/pct.conf": b"hostname: second\n"})
    (snap / "blob").write_bytes(os.urandom(24 << 20))
    out = wtmp / "a.tar.zst"
    create(CreateSpec(cfg, snap), out, compression=Compression.ZSTD)
    assert read_first_member(out) == b"hostname: first\n"
    counting = CountingReader(out.read_bytes())
    assert read_first_member(counting) == b"hostname: first\n"
    assert counting.consumed <= 2 << 20  # a 24 MiB archive, about one chunk read
    names = [m.name for m in list_members(out, limit=3)]
    assert names == [b"./etc/vzdump/pct.conf", b"./etc/vzdump/pct.fw", b"./"]
    everything = [m.name for m in iter_members(out)]
    assert everything.count(b"./etc/vzdump/pct.conf") == 2 and b"./blob" in everything


def test_vps_conf_other_spellings_and_absence() -> None:
    data = rawtar.archive(
        rawtar.directory(b"./"),
        rawtar.symlink(b"./etc/vzdump/pct.conf", b"/elsewhere"),  # not a regular file
        rawtar.member(b"etc/vzdump/vps.conf", b"openvz"),
    )
    assert read_first_member(io.BytesIO(data)) == b"openvz"
    assert read_first_member(io.BytesIO(data), names=("./nothing",)) is None
    empty_conf = rawtar.archive(rawtar.member(b"./etc/vzdump/pct.conf", b""))
    assert read_first_member(io.BytesIO(empty_conf)) == b""


def test_compressed_stream_and_limits() -> None:
    data = rawtar.archive(*(rawtar.member(f"./f{i}".encode(), b"x") for i in range(20)))
    packed = zstandard.ZstdCompressor().compress(data)
    assert len(list_members(io.BytesIO(packed))) == 20
    assert [m.name for m in list_members(io.BytesIO(packed), limit=2)] == [b"./f0", b"./f1"]
    assert list_members(io.BytesIO(packed), limit=0) == []
    with pytest.raises(ArchiveError, match=r"too large"):
        read_first_member(
            io.BytesIO(rawtar.archive(rawtar.member(b"./etc/vzdump/pct.conf", b"x" * 100))),
            max_size=10,
        )
    with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
        read_first_member(io.BytesIO(data[:2048]))
