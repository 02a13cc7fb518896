"""Look inside an archive without extracting it: list its members, or scan until a sink is done.

Both decompress only as far as they must (the vzdump config is the first member, so a restore
reads about one chunk of a many-GB archive to find it: see ``vzdumpformat``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from shared.archive.codecs import Compression
from shared.archive.decode import Source, open_decoded
from shared.archive.pipeline import CHUNK
from shared.archive.tarformat import Member
from shared.archive.tarscan import ScanSink, TarScanner


class _Collect(ScanSink):
    def __init__(self) -> None:
        self.found: list[Member] = []

    def member(self, member: Member) -> bool:
        self.found.append(member)
        return False


def iter_members(
    source: Source, *, compression: Compression | None = None, to_the_end: bool = False
) -> Iterator[Member]:
    """Members in archive order; decompression stops when the caller stops iterating, or at
    tar's end of archive. ``to_the_end`` then decompresses what follows too (a record's
    padding): a compressed stream cut or damaged after the last member, its checksum for one,
    is an ArchiveError, as it is for ``verify``, instead of a listing that looks whole."""
    stream = open_decoded(source, compression)
    sink = _Collect()
    scanner = TarScanner(sink, forward=False)
    try:
        while not scanner.ended:
            data = stream.read(CHUNK)
            if not data:
                scanner.finish()
            scanner.feed(data)
            found, sink.found = sink.found, []
            yield from found
        while to_the_end and stream.read(CHUNK):
            pass
    finally:
        stream.close()


def list_members(
    source: Source, *, limit: int | None = None, compression: Compression | None = None
) -> list[Member]:
    """The first ``limit`` members (all when None)."""
    out: list[Member] = []
    if limit is not None and limit <= 0:
        return out
    for member in iter_members(source, compression=compression):
        out.append(member)
        if limit is not None and len(out) >= limit:
            break
    return out


def scan_until(
    source: Source,
    sink: ScanSink,
    done: Callable[[], bool],
    *,
    compression: Compression | None = None,
) -> None:
    """Feed the archive's members to ``sink`` until ``done()``: only as much of the archive is
    decompressed as it takes (a config at the front costs the first blocks only)."""
    scanner = TarScanner(sink, forward=False, deliver_data=True)
    stream = open_decoded(source, compression)
    try:
        while not scanner.ended and not done():
            data = stream.read(CHUNK)
            if not data:
                scanner.finish()
            scanner.feed(data)
    finally:
        stream.close()
