"""The header fields the scan reads itself: numbers and the checksum, as GNU tar reads them."""

from __future__ import annotations

import random

import pytest

from shared.archive.tarformat import byte_sum, checksum_ok, parse_number
from shared.errors import ArchiveError
from tests.shared.archive import rawtar


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\0", 0o644),
        (b"  644 \0\0", 0o644),
        (b"00000000017\0", 0o17),
        (b"\0" * 8, 0),
        (b"        ", 0),
        (b"\x80" + (2**40).to_bytes(11, "big"), 2**40),  # GNU base-256
    ],
)
def test_numbers_tar_writes(field: bytes, value: int) -> None:
    assert parse_number(field, "size", 0) == value


@pytest.mark.parametrize(
    "field",
    [
        b"0000648\0",  # not octal
        b"0000649\0",
        b"+000644\0",  # int() would take a sign,
        b"-000644\0",
        b"0_00644\0",  # an underscore,
        b"00 0644\0",  # and spaces inside
        b"0x00644\0",
        b"\xd9\xa3\xd9\xa4\0",  # digits of another script, as UTF-8
        b"\xff" * 12,  # negative base-256
    ],
)
def test_numbers_tar_refuses(field: bytes) -> None:
    with pytest.raises(ArchiveError, match="invalid size field in tar header at offset 1024"):
        parse_number(field, "size", 1024)


def test_the_byte_sum_is_the_sum_of_the_bytes() -> None:
    rng = random.Random(5)
    blocks = [bytes(512), b"\xff" * 512, b"\xff" * 256 + bytes(256), b"\x01" * 300]
    blocks += [rng.randbytes(rng.choice([0, 1, 255, 256, 257, 511, 512])) for _ in range(500)]
    for block in blocks:
        assert byte_sum(block) == sum(block)


def _with_checksum(block: bytes, checksum: int) -> bytes:
    return block[:148] + f"{checksum:06o}".encode() + b"\0 " + block[156:]


def test_the_checksum_unsigned_and_signed() -> None:
    """GNU tar takes the sum of the header's bytes as unsigned or as signed chars (old tars)."""
    header = rawtar.header("./é-\xff".encode("latin-1"))
    assert checksum_ok(header, 0)
    blank = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blank)
    signed = unsigned - 256 * sum(b >= 0x80 for b in blank)
    assert signed != unsigned
    assert checksum_ok(_with_checksum(header, signed), 0)
    assert not checksum_ok(_with_checksum(header, unsigned + 1), 0)
    assert not checksum_ok(_with_checksum(header, signed - 1), 0)
