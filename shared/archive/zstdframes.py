"""Follow zstd frame boundaries in a compressed stream, to tell a complete stream from a cut one.

``zstandard``'s bounded readers return a clean end of data when the input stops in the middle
of a frame. This tracker walks the frame and block headers of the compressed bytes (cheap: one
3-byte header per block of up to 128 KiB) so the reader can say ``unexpected end of archive``.
Format: RFC 8878 (frames, skippable frames, block headers, optional content checksum).
"""

from __future__ import annotations

from shared.errors import ArchiveError

_ZSTD_MAGIC = 0xFD2FB528
_MAGIC, _SKIP_SIZE, _FHD, _FH_REST, _BLOCK_HDR, _SKIP = range(6)


class ZstdFrameTracker:
    def __init__(self) -> None:
        self.frames = 0
        self._state = _MAGIC
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._after_skip = _MAGIC
        self._checksum = False

    @property
    def complete(self) -> bool:
        """True at a frame boundary after at least one frame."""
        return self.frames > 0 and self._state == _MAGIC and not self._buf and not self._skip

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos, n = 0, len(view)
        while pos < n:
            if self._state == _SKIP:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                if not self._skip:
                    self._state = self._after_skip
                    self._need = 3 if self._state == _BLOCK_HDR else 4
                continue
            take = min(self._need - len(self._buf), n - pos)
            self._buf += view[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                field = bytes(self._buf)
                self._buf.clear()
                self._advance(field)

    def _skip_then(self, count: int, then: int) -> None:
        self._after_skip = then
        if count:
            self._state, self._skip = _SKIP, count
        else:
            self._state = then
            self._need = 3 if then == _BLOCK_HDR else 4

    def _advance(self, field: bytes) -> None:
        state = self._state
        if state == _MAGIC:
            magic = int.from_bytes(field, "little")
            if magic == _ZSTD_MAGIC:
                self._state, self._need = _FHD, 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = _SKIP_SIZE, 4
            else:
                raise ArchiveError("zstd: unknown frame descriptor")
        elif state == _SKIP_SIZE:
            self._skip_then(int.from_bytes(field, "little"), _MAGIC)
        elif state == _FHD:
            fhd = field[0]
            single = bool(fhd & 0x20)
            fcs_size = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            dict_size = (0, 1, 2, 4)[fhd & 3]
            self._checksum = bool(fhd & 0x04)
            rest = (0 if single else 1) + dict_size + fcs_size
            if rest:
                self._state, self._need = _FH_REST, rest
            else:
                self._state, self._need = _BLOCK_HDR, 3
        elif state == _FH_REST:
            self._state, self._need = _BLOCK_HDR, 3
        else:  # block header
            header = int.from_bytes(field, "little")
            last, btype, size = header & 1, (header >> 1) & 3, header >> 3
            if btype == 3:
                raise ArchiveError("zstd: corrupted block detected")
            body = 1 if btype == 1 else size
            if last:
                self.frames += 1
                self._skip_then(body + (4 if self._checksum else 0), _MAGIC)
            else:
                self._skip_then(body, _BLOCK_HDR)
