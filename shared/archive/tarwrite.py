"""Writing tar headers: POSIX ustar blocks, pax records, and a member's header blocks.

The counterpart of ``tarformat`` (which only parses). Used where ctkit makes tar members from
parts of others without a tar process: directory entries that carry attributes only
(``tarextract.directory_entry``) and a restic dump rewritten into the vzdump layout
(``shared.backups.resticstream``). Names and values are bytes, written as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.archive.tarformat import BLOCK, byte_sum, padded

NAME_FIELD = 100
MAX_ID = 0o7777777  # the largest uid/gid an 8-byte octal field holds
MAX_SIZE = 0o77777777777  # the largest size a 12-byte octal field holds
PAX_NAME = b"././@PaxHeader"


def octal(value: int, width: int) -> bytes:
    """A NUL-terminated octal field of ``width`` bytes."""
    return b"%0*o\0" % (width - 1, value)


def with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % byte_sum(block)
    return bytes(block)


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:  # the length counts its own digits
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def pax_header(records: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A local pax extended header (its block and padded data); b"" for no records."""
    data = b"".join(pax_record(key, value) for key, value in records)
    if not data:
        return b""
    head = bytearray(BLOCK)
    head[0 : len(PAX_NAME)] = PAX_NAME
    head[100:124] = octal(0o644, 8) + octal(0, 8) + octal(0, 8)
    head[124:148] = octal(len(data), 12) + octal(0, 12)
    head[156:157] = b"x"
    head[257:265] = b"ustar\x0000"
    return with_checksum(head) + data + bytes(padded(len(data)) - len(data))


def member_header(
    *,
    name: bytes,
    typeflag: bytes,
    mode_field: bytes,
    uid: int,
    gid: int,
    size: int,
    mtime_field: bytes,
    linkname: bytes = b"",
    device_fields: bytes = bytes(16),
    pax: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A member's header blocks: a pax header when something does not fit the ustar block
    (long names, large ids or sizes) or ``pax`` has records, then the ustar block.

    ``mode_field`` (8 bytes), ``mtime_field`` (12) and ``device_fields`` (devmajor and
    devminor, 16) are raw header fields, copied as they are. Owner names stay empty.
    """
    records = list(pax)
    if len(name) > NAME_FIELD:
        records.append((b"path", name))
    if len(linkname) > NAME_FIELD:
        records.append((b"linkpath", linkname))
    for key, value, limit in (
        (b"uid", uid, MAX_ID),
        (b"gid", gid, MAX_ID),
        (b"size", size, MAX_SIZE),
    ):
        if value > limit:
            records.append((key, b"%d" % value))
    head = bytearray(BLOCK)
    head[0:NAME_FIELD] = name[:NAME_FIELD].ljust(NAME_FIELD, b"\0")
    head[100:108] = mode_field
    head[108:116] = octal(uid if uid <= MAX_ID else 0, 8)
    head[116:124] = octal(gid if gid <= MAX_ID else 0, 8)
    head[124:136] = octal(size if size <= MAX_SIZE else 0, 12)
    head[136:148] = mtime_field
    head[156:157] = typeflag
    head[157:257] = linkname[:NAME_FIELD].ljust(NAME_FIELD, b"\0")
    head[257:265] = b"ustar\x0000"
    head[329:345] = device_fields
    return pax_header(records) + with_checksum(head)
