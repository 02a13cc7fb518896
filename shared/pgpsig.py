"""A detached OpenPGP signature as it comes from a server, checked before gpg reads it.

gpg takes whatever an ``.asc`` holds: besides signature packets, compressed packets (nested,
they unpack a few hundred KB into terabytes of zeros for gpg to churn through) and thousands
of signatures (each costs gpg a key lookup and python-gnupg a kept status line). A detached
signature needs none of that, so only a file that is one or a few signature packets, armoured
(one ``PGP SIGNATURE`` block) or binary, goes on to gpg, and as the binary packets read here:
gpg never parses bytes this module did not.
"""

from __future__ import annotations

import base64
import binascii
import re

MAX_FILE = 1 << 20  # an armoured signature is a few hundred bytes
MAX_SIGNATURES = 16  # a release index carries one; a key rollover two
SIGNATURE_TAG = 2
BEGIN = b"-----BEGIN PGP SIGNATURE-----"
END = b"-----END PGP SIGNATURE-----"
ARMOR_HEADER_RE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*: [^\r\n]*")
CRC_RE = re.compile(rb"=[A-Za-z0-9+/]{4}")


class SignatureFormatError(ValueError):
    """Not a detached signature (the reason, for the refusal's message)."""


def detached_signature(raw: bytes) -> bytes:
    """The binary signature packets of ``raw`` (armoured or binary); SignatureFormatError
    unless it holds 1 to MAX_SIGNATURES signature packets and nothing else."""
    data = _dearmor(raw) if raw.lstrip().startswith(b"-----") else raw
    count = 0
    pos = 0
    while pos < len(data):
        tag, pos = _packet(data, pos)
        if tag != SIGNATURE_TAG:
            raise SignatureFormatError(f"holds an OpenPGP packet of type {tag}, not a signature")
        count += 1
        if count > MAX_SIGNATURES:
            raise SignatureFormatError(f"holds more than {MAX_SIGNATURES} signatures")
    if not count:
        raise SignatureFormatError("holds no signature")
    return data


def _dearmor(raw: bytes) -> bytes:
    lines = raw.strip().splitlines()
    if len(lines) < 3 or lines[0].rstrip() != BEGIN or lines[-1].rstrip() != END:
        raise SignatureFormatError("is not one armoured PGP SIGNATURE block")
    body = [line.rstrip() for line in lines[1:-1]]
    if any(line.startswith(b"-----") for line in body):
        raise SignatureFormatError("is not one armoured PGP SIGNATURE block")
    while body and body[0]:  # armour headers (Version:, Comment:, Hash:) up to a blank line
        if not ARMOR_HEADER_RE.fullmatch(body.pop(0)):
            raise SignatureFormatError("has a malformed armour header")
    if body and CRC_RE.fullmatch(body[-1]):
        body.pop()  # the optional checksum: the packets' own structure is checked below
    try:
        return base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureFormatError("is not valid base64 armour") from None


def _packet(data: bytes, pos: int) -> tuple[int, int]:
    """(tag, position after the packet) of the packet at ``pos``: RFC 9580 section 4.2, with
    the lengths a signature can have (no partial or indeterminate length)."""
    first = data[pos]
    if not first & 0x80:
        raise SignatureFormatError("is not OpenPGP data")
    if first & 0x40:  # the new format: tag in 6 bits, then a 1, 2 or 5 octet length
        tag = first & 0x3F
        length, pos = _new_length(data, pos + 1)
    else:  # the old format: tag in 4 bits, the length's size in the low 2
        tag = (first >> 2) & 0x0F
        size = {0: 1, 1: 2, 2: 4}.get(first & 0x03)
        if size is None:
            raise SignatureFormatError("has a packet of indeterminate length")
        length = _uint(data, pos + 1, size)
        pos += 1 + size
    if pos + length > len(data):
        raise SignatureFormatError("is truncated")
    return tag, pos + length


def _new_length(data: bytes, pos: int) -> tuple[int, int]:
    first = _uint(data, pos, 1)
    if first < 192:
        return first, pos + 1
    if first < 224:
        return ((first - 192) << 8) + _uint(data, pos + 1, 1) + 192, pos + 2
    if first == 255:
        return _uint(data, pos + 1, 4), pos + 5
    raise SignatureFormatError("has a packet of partial length")


def _uint(data: bytes, pos: int, size: int) -> int:
    if pos + size > len(data):
        raise SignatureFormatError("is truncated")
    return int.from_bytes(data[pos : pos + size], "big")
