"""Codec names, magic bytes and compressor commands."""

from __future__ import annotations

import os

import pytest

from shared.archive.codecs import (
    Compression,
    compressed_magic,
    compression_from_name,
    compressor_command,
    decompressor_command,
    sniff,
    zstd_threads,
)
from shared.errors import ArchiveError
from tests.shared.archive import rawtar


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("vzdump-lxc-100-2024_01_01-02_00_00.tar", Compression.NONE),
        ("a.tar.gz", Compression.GZIP),
        ("a.tgz", Compression.GZIP),
        ("a.tar.bz2", Compression.BZIP2),
        ("a.tar.xz", Compression.XZ),
        ("a.tar.lzo", Compression.LZO),
        ("debian-12-standard_12.7-1_amd64.tar.zst", Compression.ZSTD),
    ],
)
def test_compression_from_name(name: str, kind: Compression) -> None:
    assert compression_from_name(name) is kind


def test_compression_from_name_errors() -> None:
    with pytest.raises(ArchiveError, match=r"^file does not look like a template archive: a\.zip$"):
        compression_from_name("a.zip")
    with pytest.raises(ArchiveError, match=r"^unrecognized compression format: \.7z$"):
        compression_from_name("a.tar.7z")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x28\xb5\x2f\xfd\x04", Compression.ZSTD),
        (b"\x1f\x8b\x08", Compression.GZIP),
        (b"\xfd7zXZ\x00\x00", Compression.XZ),
        (b"BZh91AY", Compression.BZIP2),
        (b"\x89LZO\x00\r\n\x1a\n\x10", Compression.LZO),
        (rawtar.header(b"./"), Compression.NONE),
    ],
)
def test_sniff(head: bytes, kind: Compression) -> None:
    assert sniff(head) is kind


def test_a_tar_whose_first_member_is_named_like_a_magic_is_a_tar() -> None:
    head = rawtar.header(b"BZh-notes")
    assert compressed_magic(head) is None
    assert sniff(head) is Compression.NONE
    assert compressed_magic(b"\x28\xb5\x2f\xfd\x04") is Compression.ZSTD


def test_sniff_unknown() -> None:
    with pytest.raises(ArchiveError, match=r"^unrecognized compression format$"):
        sniff(b"PK\x03\x04" + bytes(600))


def test_commands() -> None:
    assert compressor_command(Compression.GZIP) == ["gzip", "--rsyncable"]
    assert compressor_command(Compression.GZIP, pigz_threads=3) == [
        "pigz",
        "-p",
        "3",
        "--rsyncable",
    ]
    assert compressor_command(Compression.LZO) == ["lzop"]
    assert compressor_command(Compression.ZSTD) == ["zstd", "--threads=1"]
    assert compressor_command(Compression.ZSTD, zstd_threads=4, zstd_level=5) == [
        "zstd",
        "--threads=4",
        "-5",
    ]
    assert compressor_command(Compression.NONE) is None
    with pytest.raises(ArchiveError):
        compressor_command(Compression.XZ)
    assert decompressor_command(Compression.LZO) == ["lzop", "-dc"]
    assert decompressor_command(Compression.XZ) == ["xz", "-dc", "-T0"]
    assert decompressor_command(Compression.ZSTD) is None
    assert Compression.ZSTD.extension == ".zst" and Compression.NONE.extension == ""


def test_zstd_threads() -> None:
    assert zstd_threads(3) == 3
    assert zstd_threads(0) == ((os.cpu_count() or 1) + 1) // 2
