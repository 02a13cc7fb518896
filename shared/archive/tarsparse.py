"""The sparse maps of a tar stream, checked against the stored size.

The scanner skips a member's data by its stored size; GNU tar, extracting a sparse member,
reads whole blocks region by region as the map says. A map that does not add up to the stored
size makes the two part ways: tar then reads the next headers as file data and the data of a
later, approved member as headers, which nobody checked. A map whose regions (after the map,
in format 1.0) do not fill the stored size exactly, in as many blocks, is refused here.

The maps: GNU old sparse ('S': four entries in the header, 21 in each extension block), pax
0.0 (``GNU.sparse.offset``/``numbytes`` records) and 0.1 (``GNU.sparse.map``), and pax 1.0
(``GNU.sparse.major=1``: the map as decimal lines at the start of the data, padded to a block).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.archive.tarformat import BLOCK, parse_number
from shared.errors import ArchiveError

ENTRY = 24  # an old-sparse entry: offset[12], numbytes[12]
MAX_MAP = 1 << 20  # a 1.0 map longer than this (40k regions) is refused
MAX_OLD_REGIONS = 1 << 16  # an old-format map (21 per extension block) longer than this too


def old_entries(area: bytes, offset: int) -> tuple[list[int], bool]:
    """The region sizes of an old-sparse map area (header or extension block), and whether
    the map ended in it (an entry with an empty size, as GNU tar reads it)."""
    sizes: list[int] = []
    for pos in range(0, len(area) - ENTRY + 1, ENTRY):
        numbytes = area[pos + 12 : pos + ENTRY]
        if numbytes[0] == 0:
            return sizes, True
        sizes.append(parse_number(numbytes, "sparse map", offset))
    return sizes, False


def pax_sizes(records: Sequence[tuple[bytes, bytes]], offset: int) -> list[int] | None:
    """The region sizes of a pax 0.0 or 0.1 map, or None when the member has none."""
    sizes = [_number(v, offset) for k, v in records if k == b"GNU.sparse.numbytes"]
    maps = [v for k, v in records if k == b"GNU.sparse.map"]
    if maps:
        fields = maps[-1].split(b",") if maps[-1] else []
        if len(fields) % 2:
            raise ArchiveError(f"sparse map at offset {offset} has an odd number of fields")
        sizes += [_number(v, offset) for v in fields[1::2]]
    return sizes if sizes or maps else None


def is_v1(records: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(k == b"GNU.sparse.major" and v.strip() == b"1" for k, v in records)


def v1_map(data: bytes, offset: int) -> tuple[list[int], int] | None:
    """(region sizes, bytes of the map padded to a block) of a 1.0 map at the start of the
    data, or None while ``data`` does not hold the whole map yet."""
    lines = data.split(b"\n")
    complete = lines[:-1]  # the last piece has no newline yet
    if not complete:
        return None
    count = _number(complete[0], offset)
    if len(complete) < 1 + 2 * count:
        return None
    sizes = [_number(v, offset) for v in complete[2 : 1 + 2 * count : 2]]
    used = sum(len(line) + 1 for line in complete[: 1 + 2 * count])
    return sizes, -(-used // BLOCK) * BLOCK


def check(sizes: Sequence[int], stored: int, name: str, *, map_bytes: int = 0) -> None:
    """Refuse a map whose regions GNU tar would read differently from the stored size: tar
    reads each region in whole blocks (a partial one padded), the scanner skips the stored
    size in whole blocks. The regions (after the map) must fill the stored size exactly and
    take as many blocks; GNU tar's own maps do (a partial block only in the last region
    with data, at most followed by the zero-length entry that records a trailing hole)."""
    blocks = map_bytes // BLOCK + sum(-(-n // BLOCK) for n in sizes)
    if map_bytes + sum(sizes) != stored or blocks != -(-stored // BLOCK):
        raise ArchiveError(f"sparse map of member '{name}' does not match its stored size")


def _number(value: bytes, offset: int) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 20:
        raise ArchiveError(f"invalid sparse map number at offset {offset}")
    return int(text)


__all__ = ["MAX_MAP", "MAX_OLD_REGIONS", "check", "is_v1", "old_entries", "pax_sizes", "v1_map"]
