"""Test helper: build tar archives byte by byte, including ones no honest tar would write."""

from __future__ import annotations

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def header(
    name: bytes,
    *,
    type: bytes = b"0",
    size: int = 0,
    linkname: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    prefix: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    gnu: bool = False,
    size_field: bytes | None = None,
    tail: bytes = b"",
) -> bytes:
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = size_field if size_field is not None else _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[156:157] = type
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    if not gnu:
        block[345:500] = prefix.ljust(155, b"\0")
    if tail:
        block[345 : 345 + len(tail)] = tail
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes, data: bytes = b"", **kw: object) -> bytes:
    return header(name, size=len(data), **kw) + pad(data)  # type: ignore[arg-type]


def symlink(name: bytes, target: bytes, **kw: object) -> bytes:
    return header(name, type=b"2", linkname=target, mode=0o777, **kw)  # type: ignore[arg-type]


def hardlink(name: bytes, target: bytes) -> bytes:
    return header(name, type=b"1", linkname=target)


def directory(name: bytes, mode: int = 0o755) -> bytes:
    return header(name, type=b"5", mode=mode)


def pax_data(records: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def pax(records: list[tuple[bytes, bytes]], *, kind: bytes = b"x") -> bytes:
    data = pax_data(records)
    return header(b"./PaxHeaders/x", type=kind, size=len(data)) + pad(data)


def gnu_long(value: bytes, kind: bytes = b"L") -> bytes:
    data = value + b"\0"
    return header(b"././@LongLink", type=kind, size=len(data), gnu=True) + pad(data)


def end(archive_so_far: bytes = b"") -> bytes:
    tail = bytes(2 * BLOCK)
    return tail + bytes(-(len(archive_so_far) + len(tail)) % 10240)


def archive(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return body + end(body)
