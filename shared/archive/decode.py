"""Decompressing readers with bounded output, and the counted, rate-limited byte source.

``open_decoded(source, compression)`` returns a :class:`DecodedStream` whose ``read(n)`` never
returns more than ``n`` bytes however well the input compresses (a zstd "bomb" cannot blow up
memory). A cut or corrupt stream raises :class:`ArchiveError`: ``unexpected end of archive``
when the compressed stream stops short, else the codec's own error text.

Choice of decoder (measured on the 2-core reference VM, 300 MB tar): zstd, gzip (zlib) and
bzip2 run in-process, xz and lzo as ``xz -dc -T0`` / ``lzop -dc`` child processes fed by a
thread; see ``codecs.decompressor_command`` for the numbers.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import subprocess
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import zstandard

from shared.archive.codecs import (
    SNIFF_BYTES,
    Compression,
    compressed_magic,
    compression_from_name,
    decompressor_command,
    sniff,
)
from shared.archive.pipeline import CHUNK, grow_pipe, kill_group, reap, write_all
from shared.archive.ratelimit import TokenBucket
from shared.archive.zstdframes import ZstdFrameTracker
from shared.errors import ArchiveError

Source = str | os.PathLike[str] | IO[bytes]


class ByteSource:
    """The compressed input: a file or stream, read in chunks, counted and rate-limited."""

    def __init__(
        self,
        fileobj: IO[bytes],
        *,
        close: bool,
        bucket: TokenBucket | None = None,
        prefix: bytes = b"",
    ) -> None:
        self._file = fileobj
        self._close = close
        self._bucket = bucket
        self._prefix = prefix
        self.count = 0  # bytes handed out so far
        try:
            self._fd: int | None = fileobj.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self.on_read: Callable[[bytes], None] | None = None

    @classmethod
    def open(cls, source: Source, bucket: TokenBucket | None = None) -> ByteSource:
        if isinstance(source, (str, os.PathLike)):
            try:
                fh = open(source, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            except OSError as err:
                raise ArchiveError(f"unable to open archive '{source}': {err.strerror}") from None
            return cls(fh, close=True, bucket=bucket)
        return cls(source, close=False, bucket=bucket)

    def peek(self, size: int = SNIFF_BYTES) -> bytes:
        """The first bytes, without consuming them (before any ``read``)."""
        while len(self._prefix) < size:
            more = self._raw_read(size - len(self._prefix))
            if not more:
                break
            self._prefix += more
        return self._prefix[:size]

    def _raw_read(self, size: int) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, size)
        return self._file.read(size) or b""

    def read(self, size: int = CHUNK) -> bytes:
        if self._bucket is not None:
            size = self._bucket.chunk_size(size)
        if self._prefix:
            data, self._prefix = self._prefix[:size], self._prefix[size:]
        else:
            data = self._raw_read(size)
        if data:
            if self._bucket is not None:
                self._bucket.consume(len(data))
            self.count += len(data)
            if self.on_read is not None:
                self.on_read(data)
        return data

    def close(self) -> None:
        if self._close:
            self._file.close()


class DecodedStream(Protocol):
    source: ByteSource

    def read(self, size: int = CHUNK) -> bytes: ...

    def close(self) -> None: ...


class PlainStream:
    def __init__(self, source: ByteSource) -> None:
        self.source = source

    def read(self, size: int = CHUNK) -> bytes:
        return self.source.read(size)

    def close(self) -> None:
        self.source.close()


class ZstdStream:
    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self._frames = ZstdFrameTracker()
        source.on_read = self._frames.update
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source,  # type: ignore[arg-type]  # any object with read() will do
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )

    def read(self, size: int = CHUNK) -> bytes:
        try:
            data = self._reader.read(size)
        except zstandard.ZstdError as err:
            raise ArchiveError(f"zstd: {err}") from None
        if not data and not self._frames.complete:
            raise ArchiveError("unexpected end of archive")
        return data

    def close(self) -> None:
        self._reader.close()  # type: ignore[no-untyped-call]
        self.source.close()


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class StdlibStream:
    """gzip (zlib), bzip2 and xz through the standard library, multi-member aware."""

    def __init__(self, source: ByteSource, kind: Compression) -> None:
        self.source = source
        self._kind = kind
        self._dec = self._new()
        self._pending = b""  # compressed input not yet accepted by the decompressor
        self._finished = False

    def _new(self) -> _Decompressor:
        if self._kind == Compression.GZIP:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._kind == Compression.BZIP2:
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()

    def read(self, size: int = CHUNK) -> bytes:
        while not self._finished:
            if self._dec.eof and not self._next_member():
                break
            if not self._pending and self._input_wanted():
                self._pending = self.source.read()
                if not self._pending:
                    raise ArchiveError("unexpected end of archive")
            try:
                out = self._dec.decompress(self._pending, size)
            except (zlib.error, OSError, lzma.LZMAError, EOFError) as err:
                raise ArchiveError(f"{self._kind.value}: {err}") from None
            self._pending = self._leftover()
            if out:
                return out
        return b""

    def _next_member(self) -> bool:
        """After a member ends: start the next one, or finish (False) at the end of input."""
        rest = self._dec.unused_data + self._pending
        self._pending = b""
        if not rest:
            rest = self.source.read()
        while self._kind == Compression.GZIP and rest and not rest.strip(b"\0"):
            rest = self.source.read()  # NUL padding after the last member, as gzip allows
        if not rest:
            self._finished = True
            return False
        self._dec = self._new()
        self._pending = rest
        return True

    def _input_wanted(self) -> bool:
        if isinstance(self._dec, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
            return self._dec.needs_input
        return True

    def _leftover(self) -> bytes:
        tail = getattr(self._dec, "unconsumed_tail", b"")
        return bytes(tail)

    def close(self) -> None:
        self.source.close()


# How the external decompressors say that their input stopped short: xz's own words, and lzop
# reading a pipe reports the stale errno of its terminal check instead of its "unexpected end
# of file". Read as the in-process decoders' ``unexpected end of archive``.
CUT_SHORT = ("Unexpected end of input", "Inappropriate ioctl for device: <stdin>")


class ProcessStream:
    """An external decompressor (xz, lzop) fed by a thread from the byte source."""

    def __init__(self, source: ByteSource, argv: list[str]) -> None:
        self.source = source
        self._argv = argv
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        grow_pipe(self._proc.stdout.fileno())
        self._feed_error: BaseException | None = None
        self._stderr = b""
        self._stderr_thread = threading.Thread(target=self._collect_stderr, daemon=True)
        self._stderr_thread.start()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        self._done = False

    def _collect_stderr(self) -> None:
        assert self._proc.stderr is not None
        self._stderr = self._proc.stderr.read()[-4096:]

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while chunk := self.source.read():
                write_all(stdin.fileno(), chunk)
        except BrokenPipeError:
            pass  # the decompressor stopped early; its exit status tells why
        except BaseException as err:  # surfaced by read()
            self._feed_error = err
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def read(self, size: int = CHUNK) -> bytes:
        if self._done:
            return b""
        assert self._proc.stdout is not None
        data = os.read(self._proc.stdout.fileno(), size)
        if data:
            return data
        self._done = True
        self._feeder.join()
        rc = reap(self._proc)
        self._stderr_thread.join()
        if self._feed_error is not None:
            if isinstance(self._feed_error, ArchiveError):
                raise self._feed_error
            raise ArchiveError(f"reading archive failed: {self._feed_error}")
        if rc != 0:
            text = self._stderr.decode("utf-8", "replace").strip().splitlines()
            detail = text[-1] if text else f"exit code {rc}"
            if detail.endswith(CUT_SHORT):
                raise ArchiveError("unexpected end of archive")
            tool = self._argv[0]
            raise ArchiveError(detail if detail.startswith(f"{tool}:") else f"{tool}: {detail}")
        return b""

    def close(self) -> None:
        kill_group(self._proc)
        for stream in (self._proc.stdout,):
            if stream is not None:
                stream.close()
        self._feeder.join(30)
        reap(self._proc)
        self._stderr_thread.join(30)
        self.source.close()


def _refuse_compressed(source: Source, head: bytes) -> None:
    """A file named like a plain tar whose bytes are compressed (``vzdump --stdout
    --compress zstd > x.tar``) is named for what it is, not reported as a bad tar header."""
    found = compressed_magic(head)
    if found is None:
        return
    if isinstance(source, (str, os.PathLike)):
        name = Path(source).name
        raise ArchiveError(
            f"'{name}' is {found.value}-compressed, but named like an uncompressed archive",
            hint=f"rename it to '{name}{found.extension}'",
        )
    raise ArchiveError(f"the archive is {found.value}-compressed, but was given as uncompressed")


def open_decoded(
    source: Source,
    compression: Compression | None = None,
    *,
    bucket: TokenBucket | None = None,
) -> DecodedStream:
    """A bounded decompressing reader over ``source`` (None: detect the codec)."""
    if compression is None and isinstance(source, (str, os.PathLike)):
        compression = compression_from_name(Path(source).name)  # before opening, as pct does
    byte_source = ByteSource.open(source, bucket)
    try:
        kind = compression or sniff(byte_source.peek())
        if kind == Compression.NONE:
            _refuse_compressed(source, byte_source.peek())
        command = decompressor_command(kind)
        if command is not None:
            return ProcessStream(byte_source, command)
        if kind == Compression.NONE:
            return PlainStream(byte_source)
        if kind == Compression.ZSTD:
            return ZstdStream(byte_source)
        return StdlibStream(byte_source, kind)
    except BaseException:
        byte_source.close()
        raise
