"""shared.pgpsig: what of an ``.asc`` goes on to gpg, against signatures the real gpg made."""

from __future__ import annotations

import base64
import subprocess
import zlib
from collections.abc import Iterator

import pytest

from shared.pgpsig import MAX_SIGNATURES, SignatureFormatError, detached_signature
from tests.shared.gpg_keys import TestKeys, make_keys


@pytest.fixture(scope="module")
def keys() -> Iterator[TestKeys]:
    k = make_keys("alice")
    try:
        yield k
    finally:
        k.close()


@pytest.fixture(scope="module")
def armoured(keys: TestKeys, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("sig")
    (work / "data").write_bytes(b"Package: x\n")
    keys.sign(work / "data", work / "data.asc", "alice")
    return (work / "data.asc").read_bytes()


def dearmor(text: bytes) -> bytes:
    """gpg's own reading of an armoured file."""
    return subprocess.run(["gpg", "--dearmor"], input=text, capture_output=True, check=True).stdout


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with a 5-octet length."""
    return bytes([0xC0 | tag, 255]) + len(body).to_bytes(4, "big") + body


def armour(binary: bytes, headers: str = "") -> bytes:
    lines = [base64.b64encode(binary[i : i + 48]).decode() for i in range(0, len(binary), 48)]
    text = "-----BEGIN PGP SIGNATURE-----\n" + headers + "\n" + "\n".join(lines)
    return (text + "\n-----END PGP SIGNATURE-----\n").encode()


def test_gpgs_armoured_and_binary_signatures_go_through_as_the_packets_gpg_reads(
    armoured: bytes,
) -> None:
    binary = dearmor(armoured)
    assert armoured.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert detached_signature(armoured) == binary
    assert detached_signature(binary) == binary
    # armour headers and the checksum line, CRLF line ends, white space around the block
    crlf = armour(binary, "Comment: made by hand\r\n").replace(b"\n", b"\r\n")
    assert detached_signature(b"\n  " + crlf + b"\n\n") == binary
    assert detached_signature(binary * MAX_SIGNATURES) == binary * MAX_SIGNATURES


def test_a_compression_bomb_never_reaches_gpg(armoured: bytes) -> None:
    """Compressed packets (the bomb: nested ones around terabytes of zeros) and literal data
    are no part of a detached signature."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = deflate.compress(b"\0" * (16 << 20)) + deflate.flush()
    bomb = packet(8, b"\x01" + zeros)
    for data in (bomb, dearmor(armoured) + bomb, armour(bomb), bytes([0xA3, 0x01]) + zeros):
        with pytest.raises(SignatureFormatError, match=r"type 8, not a signature|indeterminate"):
            detached_signature(data)
    with pytest.raises(SignatureFormatError, match="type 11"):
        detached_signature(packet(11, b"b\0\0\0\0\0hello"))


def test_a_flood_of_signatures_is_refused(armoured: bytes) -> None:
    with pytest.raises(SignatureFormatError, match=f"more than {MAX_SIGNATURES} signatures"):
        detached_signature(dearmor(armoured) * (MAX_SIGNATURES + 1))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", r"is not OpenPGP data|holds no signature"),
        (b"hello", "is not OpenPGP data"),
        (bytes([0xC2, 0xE1]) + b"x" * 2, "partial length"),  # a partial body length
        (bytes([0xC2, 0x10]) + b"x", "is truncated"),
        (bytes([0xC2, 0xFF, 0x00]), "is truncated"),
        (b"-----BEGIN PGP SIGNATURE-----\n\n!!!\n-----END PGP SIGNATURE-----\n", "base64"),
        (b"-----BEGIN PGP MESSAGE-----\n\nAA==\n-----END PGP MESSAGE-----\n", "armoured"),
        (b"-----BEGIN PGP SIGNATURE-----\nno header\n\nwsBc\n-----END PGP SIGNATURE-----\n",
         "armour header"),
    ],
    ids=["empty", "text", "partial", "short", "short-length", "base64", "message", "header"],
)  # fmt: skip
def test_what_is_no_signature_is_named(data: bytes, reason: str) -> None:
    with pytest.raises(SignatureFormatError, match=reason):
        detached_signature(data)


def test_one_armoured_block_and_nothing_after_it(armoured: bytes) -> None:
    with pytest.raises(SignatureFormatError, match="one armoured"):
        detached_signature(armoured + armoured)
    with pytest.raises(SignatureFormatError, match="one armoured"):
        detached_signature(armoured + b"trailing text\n")
