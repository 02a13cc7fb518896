"""Listing members without extracting (the config members: test_vzdumpformat.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import zstandard

from shared.archive.codecs import Compression
from shared.archive.members import iter_members, list_members
from shared.archive.tarcreate import CreateSpec, create
from shared.errors import ArchiveError
from tests.shared.archive import rawtar
from tests.shared.archive.trees import write_files


def test_lists_in_order_and_stops_early(wtmp: Path) -> None:
    cfg = wtmp / "tmpdir"
    write_files(cfg, {"etc/vzdump/pct.conf": b"hostname: first\n", "etc/vzdump/pct.fw": b""})
    snap = wtmp / "snap"
    write_files(snap, {"etc/vzdump/pct.conf": b"hostname: second\n"})
    (snap / "blob").write_bytes(os.urandom(4 << 20))
    out = wtmp / "a.tar.zst"
    create(CreateSpec(cfg, snap), out, compression=Compression.ZSTD)
    names = [m.name for m in list_members(out, limit=3)]
    assert names == [b"./etc/vzdump/pct.conf", b"./etc/vzdump/pct.fw", b"./"]
    everything = [m.name for m in iter_members(out)]
    assert everything.count(b"./etc/vzdump/pct.conf") == 2 and b"./blob" in everything


def test_compressed_stream_and_limits() -> None:
    data = rawtar.archive(*(rawtar.member(f"./f{i}".encode(), b"x") for i in range(20)))
    packed = zstandard.ZstdCompressor().compress(data)
    assert len(list_members(io.BytesIO(packed))) == 20
    assert [m.name for m in list_members(io.BytesIO(packed), limit=2)] == [b"./f0", b"./f1"]
    assert list_members(io.BytesIO(packed), limit=0) == []
    with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
        list_members(io.BytesIO(data[:2048]))
