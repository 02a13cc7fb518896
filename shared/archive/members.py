"""Look inside an archive without extracting it: list members, read the backed-up config.

Both decompress only as far as they must: the scan stops at the first matching member (the
vzdump config is the first member, so a restore reads about one chunk of a many-GB archive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from shared.archive.codecs import Compression
from shared.archive.decode import Source, open_decoded
from shared.archive.pipeline import CHUNK
from shared.archive.tarformat import AREG, CONT, REG, Member
from shared.archive.targuard import split_name
from shared.archive.tarscan import ScanSink, TarScanner
from shared.errors import ArchiveError

CONFIG_NAMES = ("./etc/vzdump/pct.conf", "./etc/vzdump/vps.conf")
MAX_CONFIG = 16 << 20  # a container config larger than this is not a config


class _Collect(ScanSink):
    def __init__(self) -> None:
        self.found: list[Member] = []

    def member(self, member: Member) -> bool:
        self.found.append(member)
        return False


def iter_members(source: Source, *, compression: Compression | None = None) -> Iterator[Member]:
    """Members in archive order; decompression stops when the caller stops iterating."""
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


def _key(name: str | bytes) -> bytes | None:
    parts = split_name(name.encode() if isinstance(name, str) else name)
    return None if parts is None else b"/".join(parts)


def read_first_member(
    source: Source,
    names: Sequence[str | bytes] = CONFIG_NAMES,
    *,
    compression: Compression | None = None,
    max_size: int = MAX_CONFIG,
) -> bytes | None:
    """The content of the first regular member named like one of ``names``, else None.

    Names compare after dropping ``./`` and duplicate slashes. Reading stops at that member.
    """
    sink = _Matcher(names, max_size)
    scan_until(source, sink, lambda: sink.done, compression=compression)
    return bytes(sink.content) if sink.done and sink.content is not None else None


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


class _Matcher(ScanSink):
    def __init__(self, names: Sequence[str | bytes], max_size: int) -> None:
        self._keys = {k for k in (_key(n) for n in names) if k}
        self._max = max_size
        self.content: bytearray | None = None
        self.done = False

    def member(self, member: Member) -> bool:
        if self.content is not None or member.type not in (REG, AREG, CONT):
            return False
        if _key(member.name) not in self._keys:
            return False
        if member.sparse:
            raise ArchiveError(f"unsupported sparse config member '{member.display}'")
        if member.size > self._max:
            raise ArchiveError(f"config member '{member.display}' is too large")
        self.content = bytearray()
        return True

    def data(self, piece: memoryview) -> None:
        assert self.content is not None
        self.content += piece

    def member_end(self, member: Member) -> None:
        self.done = True
