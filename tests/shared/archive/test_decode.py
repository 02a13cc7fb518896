"""Decompressing readers: every codec, multi-member streams, bombs, cut and corrupt input."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from shared.archive.codecs import Compression
from shared.archive.decode import ByteSource, open_decoded
from shared.archive.zstdframes import ZstdFrameTracker
from shared.errors import ArchiveError

PAYLOAD = os.urandom(1 << 20) + b"compressible " * 200_000

TOOLS = {
    Compression.GZIP: ["gzip", "-c"],
    Compression.BZIP2: ["bzip2", "-c"],
    Compression.XZ: ["xz", "-c", "-T2"],
    Compression.LZO: ["lzop", "-c"],
    Compression.ZSTD: ["zstd", "-c", "-T2"],
}


def _compress(kind: Compression, data: bytes = PAYLOAD) -> bytes:
    return subprocess.run(TOOLS[kind], input=data, capture_output=True, check=True).stdout


def _read_all(source: object, kind: Compression | None = None) -> bytes:
    stream = open_decoded(source, kind)  # type: ignore[arg-type]
    out = bytearray()
    try:
        while chunk := stream.read(1 << 20):
            assert len(chunk) <= 1 << 20
            out += chunk
    finally:
        stream.close()
    return bytes(out)


@pytest.mark.parametrize("kind", list(TOOLS))
def test_roundtrip_from_path_and_stream(tmp_path: Path, kind: Compression) -> None:
    data = _compress(kind)
    path = tmp_path / f"a.tar{kind.extension}"
    path.write_bytes(data)
    assert _read_all(path) == PAYLOAD
    assert _read_all(io.BytesIO(data)) == PAYLOAD  # sniffed


@pytest.mark.parametrize("kind", list(TOOLS))
def test_truncated_stream_fails(kind: Compression) -> None:
    data = _compress(kind)
    with pytest.raises(ArchiveError) as info:
        _read_all(io.BytesIO(data[: len(data) - 7]), kind)
    # lzop said "Inappropriate ioctl for device: <stdin>" (its stale errno), xz its own words
    assert str(info.value) == "unexpected end of archive"


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.BZIP2, Compression.ZSTD])
def test_concatenated_members(kind: Compression) -> None:
    data = _compress(kind, b"first\n") + _compress(kind, b"second\n")
    assert _read_all(io.BytesIO(data), kind) == b"first\nsecond\n"


def test_gzip_trailing_zeros_are_accepted_but_garbage_is_not() -> None:
    data = _compress(Compression.GZIP, b"x" * 1000)
    assert _read_all(io.BytesIO(data + bytes(4096)), Compression.GZIP) == b"x" * 1000
    with pytest.raises(ArchiveError, match=r"^gzip: "):
        _read_all(io.BytesIO(data + b"garbage!"), Compression.GZIP)


def test_corrupt_zstd_reports_zstd_error() -> None:
    data = bytearray(_compress(Compression.ZSTD))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ArchiveError, match=r"^zstd: "):
        _read_all(io.BytesIO(bytes(data)), Compression.ZSTD)


def test_zstd_bomb_output_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    assert len(bomb) < 64 << 10
    stream = open_decoded(io.BytesIO(bomb), Compression.ZSTD)
    total = 0
    while chunk := stream.read(1 << 20):
        assert len(chunk) <= 1 << 20
        total += len(chunk)
    assert total == 256 << 20


def test_byte_source_peek_counts_and_prefix() -> None:
    src = ByteSource(io.BytesIO(b"abcdefgh"), close=False)
    assert src.peek(3) == b"abc" and src.count == 0
    assert src.read(2) == b"ab"
    assert b"".join(iter(lambda: src.read(10), b"")) == b"cdefgh"  # short reads allowed
    assert src.count == 8


@pytest.mark.parametrize("kind", [Compression.ZSTD, Compression.LZO])
def test_a_compressed_file_named_like_a_plain_tar_is_named_for_what_it_is(
    tmp_path: Path, kind: Compression
) -> None:
    path = tmp_path / "out.tar"  # vzdump --stdout --compress ... > out.tar
    path.write_bytes(_compress(kind))
    with pytest.raises(ArchiveError) as exc:
        _read_all(path)
    assert str(exc.value) == (
        f"'out.tar' is {kind.value}-compressed, but named like an uncompressed archive"
    )
    assert exc.value.hint == f"rename it to 'out.tar{kind.extension}'"
    assert _read_all(path, kind) == PAYLOAD  # the codec given explicitly reads it


def test_missing_file() -> None:
    with pytest.raises(ArchiveError, match=r"^unable to open archive '/nonexistent.tar'"):
        open_decoded("/nonexistent.tar")


def test_frame_tracker() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(PAYLOAD)
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    tracker = ZstdFrameTracker()
    for i in range(0, len(frame), 777):
        tracker.update(frame[i : i + 777])
    assert tracker.complete and tracker.frames == 1
    tracker.update(skippable)
    assert tracker.complete
    tracker.update(frame[:100])
    assert not tracker.complete
    with pytest.raises(ArchiveError, match=r"unknown frame descriptor"):
        ZstdFrameTracker().update(b"PK\x03\x04")
