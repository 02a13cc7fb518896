"""The tar header format: 512-byte ustar/GNU/v7 headers, pax records, and the Member record.

Only parsing lives here; the incremental state machine that walks an archive is ``tarscan``.
Everything is bytes: member names are byte strings (Linux file names need not be UTF-8).
Anything the parser cannot read unambiguously raises :class:`ArchiveError`, because a header
that ctkit reads one way and GNU tar another is exactly how a hostile archive slips through.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field

from shared.errors import ArchiveError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
RECORD = 10240  # GNU tar's default record (20 blocks); archives are padded to it

# Type flags.
REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = (
    b"0",
    b"\0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"7",
)
GNU_SPARSE = b"S"
PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK = b"x", b"g", b"L", b"K"
REGULAR_TYPES = frozenset({REG, AREG, CONT, GNU_SPARSE})
NODATA_TYPES = frozenset({LNK, SYM, CHR, BLK, DIR, FIFO})
MEMBER_TYPES = REGULAR_TYPES | NODATA_TYPES
EXTENSION_TYPES = frozenset({PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK})

# Largest extension header payload we hold in memory (pax records, GNU long names).
MAX_EXTENSION = 8 << 20
# A name no file system call takes (PATH_MAX, and a prefix such as "./" or a restic dump's
# "rootfs/"): tar fails on it, and as components it took hundreds of MB (an 8 MB pax path of
# "ab/ab/...")
MAX_NAME = 4096 + 16
MAX_PAX_RECORDS = 1 << 16  # an 8 MiB header of tiny records took 175 MB as a list and a dict


@dataclass(slots=True)
class RawHeader:
    """The fields of one 512-byte header block that decide how the archive is walked (the
    scanner's own record, not frozen: a frozen class's ``__init__`` took twice as long, and
    the scanner makes two a member)."""

    typeflag: bytes
    name: bytes  # the name field alone
    prefixed: bytes | None  # prefix + "/" + name for POSIX ustar with a prefix, else None
    linkname: bytes
    size: int
    gnu: bool  # old GNU format ("ustar  \0")
    sparse_extended: bool  # GNU 'S': extension blocks follow
    block: bytes  # the whole header, for the fields parsed on demand


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member as GNU tar will see it, plus every name it could be given.

    ``name``/``linkname`` follow GNU tar's precedence (GNU.sparse.name > pax path > GNU long
    name > ustar name); ``names``/``linknames`` hold every candidate so that a safety check can
    cover all of them and never depend on getting that precedence exactly right.
    """

    offset: int
    type: bytes
    name: bytes
    names: tuple[bytes, ...]
    linkname: bytes
    linknames: tuple[bytes, ...]
    size: int  # bytes of data that follow the header(s) in the archive (before padding)
    sparse: bool
    header: bytes = ZERO_BLOCK  # the raw header block: the fields below are parsed on demand
    pax: dict[bytes, bytes] = field(default_factory=dict)  # pax records (last value wins)

    # Parsing these for every member would cost the extraction ~25% of its scanning time.
    @property
    def mode(self) -> int:
        return parse_number(self.header[100:108], "mode", self.offset)

    @property
    def uid(self) -> int:
        return self._pax_or(b"uid", 108, 116)

    @property
    def gid(self) -> int:
        return self._pax_or(b"gid", 116, 124)

    @property
    def mtime(self) -> float:
        value = parse_pax_time(self.pax.get(b"mtime", b""))
        return (
            float(parse_number(self.header[136:148], "mtime", self.offset))
            if value is None
            else value
        )

    @property
    def devmajor(self) -> int:
        return parse_number(self.header[329:337], "devmajor", self.offset)

    @property
    def devminor(self) -> int:
        return parse_number(self.header[337:345], "devminor", self.offset)

    def _pax_or(self, key: bytes, start: int, end: int) -> int:
        if key in self.pax:
            return parse_pax_number(self.pax[key], key, self.offset)
        return parse_number(self.header[start:end], key.decode(), self.offset)

    @property
    def display(self) -> str:
        return display_name(self.name)

    def is_regular(self) -> bool:
        return self.type in REGULAR_TYPES

    def is_dir(self) -> bool:
        return self.type == DIR or (self.type in (REG, AREG, CONT) and self.name.endswith(b"/"))


def display_name(name: bytes) -> str:
    """A member name for messages and listings: control characters (C1 ones and those that
    reverse or hide text too) and undecodable bytes escaped as tar escapes them, in octal."""
    out = []
    for ch in os.fsdecode(name):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte
            out.append(f"\\{code - 0xDC00:03o}")
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append("".join(f"\\{byte:03o}" for byte in ch.encode()))
    return "".join(out)


def padded(size: int) -> int:
    return (size + BLOCK - 1) & ~(BLOCK - 1)


def _field(block: bytes, start: int, stop: int) -> bytes:
    """The text field at ``block[start:stop]``, up to its first NUL."""
    end = block.find(b"\0", start, stop)
    return block[start : stop if end < 0 else end]


def parse_number(field: bytes, what: str, offset: int) -> int:
    """An octal (or GNU base-256) numeric field; negative or malformed numbers are refused."""
    if field and field[0] & 0x80:
        if field[0] != 0x80:  # 0xff = negative base-256
            raise ArchiveError(f"invalid {what} field in tar header at offset {offset}")
        return int.from_bytes(field[1:], "big")
    text = field.strip(b" \0")
    if not text:
        return 0
    # ASCII digits alone (int() would take a sign, spaces and underscores); an 8 or a 9 fails
    # the base
    if text.isdigit():
        try:
            return int(text, 8)
        except ValueError:
            pass
    raise ArchiveError(f"invalid {what} field in tar header at offset {offset}")


def byte_sum(data: bytes | bytearray) -> int:
    """The sum of the bytes of ``data``, at most a block (512 bytes). Adler-32 keeps 1 + that
    sum, modulo 65521, in its low 16 bits: exact for 256 bytes (at most 65,280), and computed
    in C. ``sum`` over the bytes took 2 us a header."""
    return (zlib.adler32(data[:256]) & 0xFFFF) + (zlib.adler32(data[256:]) & 0xFFFF) - 2


def checksum_ok(block: bytes, offset: int) -> bool:
    stored = parse_number(block[148:156], "checksum", offset)
    unsigned = byte_sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    # Old tars summed signed chars; GNU tar accepts both.
    signed = unsigned - 256 * sum(b >= 0x80 for b in block[:148] + block[156:])
    return stored == signed


def _check(block: bytes, offset: int) -> None:
    if not checksum_ok(block, offset):
        raise ArchiveError(f"invalid tar header at offset {offset} (checksum mismatch)")


def extension_size(block: bytes, offset: int) -> int:
    """The size field of an extended header's own block (pax, GNU long name), checked as
    :func:`parse_header` checks a block: the walk needs no other field of it."""
    _check(block, offset)
    return parse_number(block[124:136], "size", offset)


def parse_header(block: bytes, offset: int) -> RawHeader:
    """Parse one non-zero header block; a bad checksum or field is an ArchiveError."""
    _check(block, offset)
    magic = block[257:265]
    gnu = magic == b"ustar  \0"
    name = _field(block, 0, 100)
    prefixed = None
    if magic[:6] == b"ustar\0":  # POSIX
        prefix = _field(block, 345, 500)
        if prefix:
            prefixed = prefix + b"/" + name
    typeflag = block[156:157]
    return RawHeader(
        typeflag=typeflag,
        name=name,
        prefixed=prefixed,
        linkname=_field(block, 157, 257),
        size=parse_number(block[124:136], "size", offset),
        gnu=gnu,
        sparse_extended=gnu and typeflag == GNU_SPARSE and block[482] != 0,
        block=block,
    )


def parse_pax(data: bytes, offset: int) -> list[tuple[bytes, bytes]]:
    """The ``<len> <key>=<value>\\n`` records of a pax extended header, in order."""
    records: list[tuple[bytes, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding after the last record
            if data[pos:].strip(b"\0"):
                break
            return records
        space = data.find(b" ", pos, min(end, pos + 24))
        digits = data[pos:space]
        if space < 0 or not digits.isdigit():
            break
        length = int(digits)
        stop = pos + length  # one past the record's newline
        if length <= space - pos + 1 or stop > end or data[stop - 1] != 0x0A:
            break
        key, eq, value = data[space + 1 : stop - 1].partition(b"=")
        if not eq or not key:
            break
        records.append((key, value))
        if len(records) > MAX_PAX_RECORDS:
            raise ArchiveError(f"pax extended header at offset {offset} has too many records")
        pos = stop
    else:
        return records
    raise ArchiveError(f"malformed pax extended header at offset {offset}")


def parse_pax_number(value: bytes, key: bytes, offset: int) -> int:
    # at most 20 digits (64 bits): int() of 4300 or more raised a ValueError (a traceback)
    if not value.isdigit() or len(value) > 20:
        raise ArchiveError(f"invalid pax '{key.decode(errors='replace')}' at offset {offset}")
    return int(value)


_PAX_TIME = re.compile(rb"-?[0-9]{1,20}(?:\.[0-9]{0,30})?")


def parse_pax_time(value: bytes) -> float | None:
    """A pax time (decimal seconds); None for anything else: float() took 'nan', 'inf' and
    '1e300', which no later use of the time could handle."""
    return float(value) if _PAX_TIME.fullmatch(value) else None
