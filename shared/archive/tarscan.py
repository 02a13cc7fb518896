"""Walk a tar stream incrementally: headers are parsed, data blocks skipped by size.

:class:`TarScanner` is fed decompressed chunks of any size. For every member it assembles the
header with its extension headers (pax ``x``, GNU long name ``L`` / long link ``K``, global pax
``g``) and asks its sink whether to keep the member. In forwarding mode (the extraction guard)
the raw bytes of kept members are queued for tar's stdin; a member's header bytes are held
back until the sink has approved it, so tar never sees a rejected header. After the first
zero block the archive is over: the scanner emits a clean end (two zero blocks, padded to a
10 KiB record) and ignores everything that follows.

Data is skipped by the member's stored size, which covers every sparse variant: GNU old
sparse ('S' + extension blocks, then the stored chunks) and pax sparse 0.x/1.0 (the map, if
any, is part of the stored data). A sparse map must add up to that size (tarsparse), or GNU
tar would read the member's data differently and find headers nobody checked.
"""

from __future__ import annotations

from shared.archive import tarsparse
from shared.archive.tarformat import (
    BLOCK,
    EXTENSION_TYPES,
    GNU_LONGLINK,
    GNU_LONGNAME,
    GNU_SPARSE,
    MAX_EXTENSION,
    MAX_NAME,
    MEMBER_TYPES,
    NODATA_TYPES,
    PAX_GLOBAL,
    PAX_LOCAL,
    RECORD,
    ZERO_BLOCK,
    Member,
    RawHeader,
    display_name,
    extension_size,
    padded,
    parse_header,
    parse_pax,
    parse_pax_number,
)
from shared.archive.tarwrite import octal, with_checksum
from shared.errors import ArchiveError

_HEADER, _EXTDATA, _SPARSEEXT, _DATA, _END = range(5)

# Keys a global pax header may not set: they would silently rename or resize later members.
_GLOBAL_FORBIDDEN = (b"path", b"linkpath", b"size", b"GNU.sparse.")
_NAME_KEYS = frozenset({b"path", b"GNU.sparse.name", b"linkpath"})


class ScanSink:
    """What the scanner reports to. ``member`` returns True to keep (forward/deliver) it."""

    def member(self, member: Member) -> bool:
        return True

    def data(self, piece: memoryview) -> None:
        """Data of a kept member (without block padding), when the scanner delivers data."""

    def member_end(self, member: Member) -> None:
        """A kept member's data is complete."""


class TarScanner:
    def __init__(
        self,
        sink: ScanSink,
        *,
        forward: bool,
        deliver_data: bool = False,
        strip_setid: bool = False,
    ) -> None:
        self.sink = sink
        self.forward = forward
        self.strip_setid = strip_setid  # forwarded headers lose setuid and setgid
        self.deliver_data = deliver_data
        self.out: list[bytes | memoryview] = []
        self.forwarded = 0  # bytes handed to ``out`` so far
        self.offset = 0  # archive offset of the next byte to be consumed
        self.members = 0
        self.ended = False
        self._state = _HEADER
        self._need = BLOCK
        self._buf = bytearray()
        self._reset_extensions()
        self._member: Member | None = None
        self._keep = False
        self._left = 0  # bytes of data + padding still to pass
        self._deliver_left = 0  # of those, data bytes still to deliver
        self._sparse: list[int] = []  # region sizes of an old-sparse map read so far
        self._v1map: bytearray | None = None  # the start of a pax 1.0 sparse member's data

    def _reset_extensions(self) -> None:
        self._held: list[bytes] = []
        self._pax: list[tuple[bytes, bytes]] | None = None
        self._longname: bytes | None = None
        self._longlink: bytes | None = None
        self._ext_kind = b""  # the extended header whose data comes next: its type
        self._ext_size = 0  # and its size
        self._ext_offset = 0

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        mv = memoryview(chunk)
        pos, n = 0, len(mv)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._left, n - pos)
                piece = mv[pos : pos + take]
                if self._v1map is not None:
                    self._on_v1_map(piece)
                if self._keep:
                    if self.forward:
                        self._emit(piece)
                    if self.deliver_data and self._deliver_left:
                        part = piece[: self._deliver_left]
                        self._deliver_left -= len(part)
                        self.sink.data(part)
                pos += take
                self._left -= take
                self.offset += take
                if not self._left:
                    self._end_member()
            elif state == _END:
                self.offset += n - pos
                return
            else:
                block, pos = self._take_block(mv, pos, n)
                if block is None:  # the chunk ended inside the block
                    continue
                start = self.offset
                self.offset += len(block)
                if state == _HEADER:
                    self._on_header(block, start)
                elif state == _EXTDATA:
                    self._on_extension_data(block)
                else:
                    self._on_sparse_block(block)

    def _take_block(self, mv: memoryview, pos: int, n: int) -> tuple[bytes | None, int]:
        """The ``_need`` bytes of a header or extension from ``mv`` at ``pos`` (and the
        position after them), or None once what the chunk had of them is kept in ``_buf``."""
        need = self._need
        if not self._buf and n - pos >= need:  # whole in this chunk: one copy
            return bytes(mv[pos : pos + need]), pos + need
        take = min(need - len(self._buf), n - pos)
        self._buf += mv[pos : pos + take]
        if len(self._buf) < need:
            return None, pos + take
        block = bytes(self._buf)
        self._buf.clear()
        return block, pos + take

    def finish(self) -> None:
        """The input is exhausted: anything short of a proper end of archive is an error."""
        if not self.ended:
            raise ArchiveError("unexpected end of archive")

    def take_output(self) -> list[bytes | memoryview]:
        out, self.out = self.out, []
        return out

    def _emit(self, data: bytes | memoryview) -> None:
        self.out.append(data)
        self.forwarded += len(data)

    # -- headers -----------------------------------------------------------------------------

    def _on_header(self, block: bytes, offset: int) -> None:
        if block == ZERO_BLOCK:
            self._on_end(offset)
            return
        kind = block[156:157]
        if kind in EXTENSION_TYPES:
            self._start_extension(kind, extension_size(block, offset), block, offset)
            return
        raw = parse_header(block, offset)
        if raw.typeflag in MEMBER_TYPES:
            self._start_member(raw, block, offset)
        else:
            name = display_name(raw.prefixed or raw.name)
            flag = raw.typeflag.decode("latin-1")
            raise ArchiveError(f"unsupported member type '{flag}' for '{name}' at offset {offset}")

    def _on_end(self, offset: int) -> None:
        if self._held:
            raise ArchiveError(f"extended header at offset {self._ext_offset} has no member")
        self.ended = True
        self._state = _END
        if self.forward:
            tail = 2 * BLOCK
            tail += -(self.forwarded + tail) % RECORD
            self._emit(bytes(tail))

    def _start_extension(self, kind: bytes, size: int, block: bytes, offset: int) -> None:
        if size > MAX_EXTENSION:
            raise ArchiveError(f"extended header at offset {offset} is too large ({size})")
        held = sum(map(len, self._held))
        if held + size > MAX_EXTENSION:  # any number of global headers could pile up
            raise ArchiveError(f"extended headers before offset {offset} are too large")
        duplicate = (
            (kind == PAX_LOCAL and self._pax is not None)
            or (kind == GNU_LONGNAME and self._longname is not None)
            or (kind == GNU_LONGLINK and self._longlink is not None)
        )
        if duplicate:
            raise ArchiveError(f"repeated extended header at offset {offset}")
        if not self._held:
            self._ext_offset = offset
        self._held.append(block)
        self._ext_kind, self._ext_size = kind, size
        if size == 0:
            self._on_extension_data(b"")
        else:
            self._state, self._need = _EXTDATA, padded(size)

    def _on_extension_data(self, block: bytes) -> None:
        kind = self._ext_kind
        self._held.append(block)
        data = block[: self._ext_size]
        offset = self.offset - len(block) - BLOCK
        if kind == PAX_LOCAL:
            self._pax = parse_pax(data, offset)
        elif kind == PAX_GLOBAL:
            for key, _ in parse_pax(data, offset):
                if key.startswith(_GLOBAL_FORBIDDEN):
                    keyname = key.decode(errors="replace")
                    raise ArchiveError(f"global pax header at offset {offset} sets '{keyname}'")
        else:
            value = data.split(b"\0", 1)[0]
            if kind == GNU_LONGNAME:
                self._longname = value
            else:
                self._longlink = value
        self._state, self._need = _HEADER, BLOCK

    # -- members -----------------------------------------------------------------------------

    def _start_member(self, raw: RawHeader, block: bytes, offset: int) -> None:
        member = self._assemble(raw, offset)
        self._check_sparse(raw, member, offset)
        self.members += 1
        keep = self.sink.member(member)
        if keep and self.forward:
            for held in self._held:
                self._emit(held)
            self._emit(_without_setid(block, member.mode) if self.strip_setid else block)
        self._reset_extensions()
        self._member, self._keep = member, keep
        if raw.sparse_extended:
            self._state, self._need = _SPARSEEXT, BLOCK
        else:
            self._start_data(member)

    def _check_sparse(self, raw: RawHeader, member: Member, offset: int) -> None:
        """Keep in step with how GNU tar will read a sparse member's data (tarsparse)."""
        self._v1map = None
        if raw.typeflag == GNU_SPARSE:
            name = display_name(member.name)  # only for a message: most members are not sparse
            if not raw.gnu:
                raise ArchiveError(f"sparse member '{name}' at offset {offset} is not GNU")
            self._sparse, ended = tarsparse.old_entries(raw.block[386:482], offset)
            if ended and raw.sparse_extended:  # tar stops reading the map; we would not
                raise ArchiveError(f"sparse map of member '{name}' ends before its extensions")
            if not raw.sparse_extended:
                tarsparse.check(self._sparse, member.size, name)
            return
        if not member.sparse:  # no GNU.sparse.* record: neither kind of pax map
            return
        records = self._pax or []
        if tarsparse.is_v1(records):
            self._v1map = bytearray()
            return
        sizes = tarsparse.pax_sizes(records, offset)
        if sizes is not None:
            tarsparse.check(sizes, member.size, display_name(member.name))

    def _on_v1_map(self, piece: memoryview) -> None:
        assert self._v1map is not None and self._member is not None
        self._v1map += piece[: tarsparse.MAX_MAP + 1 - len(self._v1map)]
        name = display_name(self._member.name)
        parsed = tarsparse.v1_map(bytes(self._v1map), self._member.offset)
        if parsed is not None:
            sizes, map_bytes = parsed
            tarsparse.check(sizes, self._member.size, name, map_bytes=map_bytes)
            self._v1map = None
        elif len(self._v1map) > tarsparse.MAX_MAP or len(self._v1map) >= self._member.size:
            raise ArchiveError(f"sparse map of member '{name}' does not match its stored size")

    def _on_sparse_block(self, block: bytes) -> None:
        if self._keep and self.forward:
            self._emit(block)
        assert self._member is not None
        sizes, ended = tarsparse.old_entries(block[:504], self._member.offset)
        self._sparse += sizes
        name = display_name(self._member.name)
        if len(self._sparse) > tarsparse.MAX_OLD_REGIONS:  # each block grew it: 687 MB for 200 KB
            raise ArchiveError(f"sparse map of member '{name}' is too long")
        if ended and block[504] != 0:
            raise ArchiveError(f"sparse map of member '{name}' ends before its extensions")
        if block[504] == 0:
            tarsparse.check(self._sparse, self._member.size, name)
            self._start_data(self._member)
        else:
            self._state, self._need = _SPARSEEXT, BLOCK

    def _start_data(self, member: Member) -> None:
        self._left = padded(member.size)
        self._deliver_left = member.size
        if self._left:
            self._state = _DATA
        else:
            self._end_member()

    def _end_member(self) -> None:
        member, keep = self._member, self._keep
        if self._v1map is not None and member is not None:
            # the data ended before its 1.0 map (a stored size of 0): tar would read the map
            # from the blocks after it, which this scan takes for the next header
            name = display_name(member.name)
            raise ArchiveError(f"sparse map of member '{name}' does not match its stored size")
        self._member, self._keep = None, False
        self._state, self._need = _HEADER, BLOCK
        if keep and member is not None:
            self.sink.member_end(member)

    def _assemble(self, raw: RawHeader, offset: int) -> Member:
        pax = self._pax or []
        values = dict(pax)  # last record wins, as in GNU tar
        extended = self._longname is not None or self._longlink is not None
        if extended or not values.keys().isdisjoint(_NAME_KEYS):
            name, names, linkname, linknames = self._extended_names(raw, pax, offset)
        else:  # most members
            name, names, linkname, linknames = _header_names(raw)
        size = raw.size
        if b"size" in values:
            size = parse_pax_number(values[b"size"], b"size", offset)
        nodata = raw.typeflag in NODATA_TYPES or name.endswith(b"/")
        if nodata and (size or raw.size):
            raise ArchiveError(f"member '{display_name(name)}' at offset {offset} has stray data")
        sparse = raw.typeflag == GNU_SPARSE or (
            bool(values) and any(k.startswith(b"GNU.sparse.") for k in values)
        )
        return Member(
            offset=offset,
            type=raw.typeflag,
            name=name,
            names=names,
            linkname=linkname,
            linknames=linknames,
            size=size,
            sparse=sparse,
            header=raw.block,
            pax=values,
        )

    def _extended_names(
        self, raw: RawHeader, pax: list[tuple[bytes, bytes]], offset: int
    ) -> _Names:
        """The names of a member that pax records or GNU long names name too, in GNU tar's
        precedence, with every name it could be given."""
        pax_paths = [v for k, v in pax if k == b"path"]
        sparse_names = [v for k, v in pax if k == b"GNU.sparse.name"]
        pax_links = [v for k, v in pax if k == b"linkpath"]
        ustar_name = raw.prefixed if raw.prefixed is not None else raw.name
        names = [raw.name, ustar_name, *pax_paths, *sparse_names]
        if self._longname is not None:
            names.append(self._longname)
        if sparse_names:
            name = sparse_names[-1]
        elif pax_paths:
            name = pax_paths[-1]
        elif self._longname is not None:
            name = self._longname
        else:
            name = ustar_name
        linknames = [raw.linkname, *pax_links]
        if self._longlink is not None:
            linknames.append(self._longlink)
        linkname = pax_links[-1] if pax_links else (self._longlink or raw.linkname)
        if b"\0" in b"".join(names) or b"\0" in b"".join(linknames):
            raise ArchiveError(f"member name with a NUL byte at offset {offset}")
        if max(map(len, (*names, *linknames))) > MAX_NAME:
            raise ArchiveError(f"member name longer than {MAX_NAME} bytes at offset {offset}")
        unique_links = tuple(dict.fromkeys(n for n in linknames if n))
        return name, tuple(dict.fromkeys(names)), linkname, unique_links


_Names = tuple[bytes, tuple[bytes, ...], bytes, tuple[bytes, ...]]  # name, names, link, links


def _without_setid(block: bytes, mode: int) -> bytes:
    """The header with its mode's setuid and setgid bits cleared (permissions and the sticky
    bit kept), written as plain octal: tar reads the very mode this scan read."""
    head = bytearray(block)
    head[100:108] = octal(mode & 0o1777, 8)
    return with_checksum(head)


def _header_names(raw: RawHeader) -> _Names:
    """The names of a member that only its header names: what ``_extended_names`` gives then,
    without its checks for a NUL (a header's fields end at their first NUL)."""
    name = raw.prefixed if raw.prefixed is not None else raw.name
    names = (raw.name,) if name == raw.name else (raw.name, name)
    return name, names, raw.linkname, (raw.linkname,) if raw.linkname else ()
