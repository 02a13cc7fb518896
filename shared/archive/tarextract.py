"""Extract an archive into a root directory: decompress → guard → GNU tar (pct §4.2.5).

The archive is decompressed in-process (see ``decode``), walked by the streaming header
scanner, and every member is approved by :class:`~shared.archive.targuard.ExtractGuard` before
tar receives its header (module ``targuard`` explains the threat model). tar runs with Proxmox's
flags, under ``lxc-usernsexec`` when an id map is given, which shifts owners for unprivileged
containers. Decompression runs in a reader thread, the scan and the writes to tar in the
calling thread, tar in its own process: three stages in parallel, like ``zstd -dc | tar x``.

Failures: a hostile, cut or corrupt archive is an :class:`ArchiveError` (tar is stopped at once;
members before the bad one have been extracted, so the caller discards the target volume). A
tar failure is a :class:`CommandError` unless ``ignore_unpack_errors``; tar stopping before the
end of the archive is always an error.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from shared.archive.codecs import Compression
from shared.archive.decode import DecodedStream, Source, open_decoded
from shared.archive.idmap import IdMapEntry, usernsexec_argv
from shared.archive.pipeline import (
    CHUNK,
    LinePump,
    LogFn,
    ProgressFn,
    TransferStats,
    command_text,
    drain,
    grow_pipe,
    kill_group,
    pipeline_failed,
    reap,
    spawn,
    write_pieces,
)
from shared.archive.ratelimit import TokenBucket
from shared.archive.tarcreate import COMMON_TAR_FLAGS
from shared.archive.targuard import ExtractGuard
from shared.archive.tarscan import TarScanner
from shared.errors import CommandError

_QUEUE_DEPTH = 4  # decoded chunks in flight: bounds memory to a few MiB


def tar_extract_command(rootdir: Path | str, idmap: Sequence[IdMapEntry] | None) -> list[str]:
    argv = ["tar", "xpf", "-", "--totals", *COMMON_TAR_FLAGS]
    argv += ["-C", str(rootdir), "--skip-old-files", "--anchored", "--exclude", "./dev/*"]
    return usernsexec_argv(idmap) + argv


class _Reader:
    """The decompressing thread: decoded chunks (b"" at the end) or an exception, in order."""

    def __init__(self, stream: DecodedStream) -> None:
        self.stream = stream
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while data := self.stream.read(CHUNK):
                if not self._put(data):
                    return
            self._put(b"")
        except BaseException as err:
            self._put(err)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.stream.close()
        self._thread.join(30)


def extract(
    source: Source,
    rootdir: Path | str,
    *,
    compression: Compression | None,
    idmap: Sequence[IdMapEntry] | None = None,
    ignore_unpack_errors: bool = False,
    bwlimit_kib: int | None = None,
    progress: ProgressFn | None = None,
    log: LogFn = lambda line: None,
) -> TransferStats:
    """Extract ``source`` (a path, or a binary stream such as stdin) into ``rootdir``.

    ``compression`` None detects it (extension of a path, magic bytes of a stream). The
    bandwidth limit applies to the archive as read, as ``cstream`` does in Proxmox. ``progress``
    gets the archive bytes read so far; ``log`` gets tar's output lines (``Total bytes read``)
    and the guard's warnings. Returns bytes read (``bytes_in``) and fed to tar (``bytes_out``).
    """
    start = time.monotonic()
    stats = TransferStats()
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def warn(message: str) -> None:
        stats.warnings.append(message)
        lines.put(message)

    stream = open_decoded(source, compression, bucket=TokenBucket.from_kib(bwlimit_kib))
    reader = _Reader(stream)
    argv = tar_extract_command(rootdir, idmap)
    text = command_text([argv])
    guard = ExtractGuard(allow_devices=not idmap, drop_devices=ignore_unpack_errors, warn=warn)
    scanner = TarScanner(guard, forward=True)
    try:
        tar = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as err:
        reader.stop()
        raise CommandError(f"command '{text}' failed: {err.strerror}") from None
    assert tar.stdin is not None and tar.stdout is not None
    pump = LinePump(tar.stdout, lines)
    grow_pipe(tar.stdin.fileno())
    tar_stopped_early = False
    try:
        while True:
            item = reader.queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                scanner.finish()
                break
            if not tar.stdin.closed:
                scanner.feed(item)
                try:
                    write_pieces(tar.stdin.fileno(), scanner.take_output())
                except BrokenPipeError:
                    tar_stopped_early = True
                    break
                if scanner.ended:
                    tar.stdin.close()  # tar can finish while the rest is checked
            drain(lines, log)
            if progress is not None:
                progress(stream.source.count)
    except BaseException:
        kill_group(tar)
        raise
    finally:
        reader.stop()
        with contextlib.suppress(OSError):
            tar.stdin.close()
        status = reap(tar, timeout=None)
        pump.join()
        drain(lines, log)
    if tar_stopped_early and status == 0:
        raise CommandError(f"command '{text}' failed: tar stopped reading the archive early")
    if status != 0 and ignore_unpack_errors and not tar_stopped_early:
        log(f"ignoring unpack errors: command '{text}' failed: exit code {status}")
    else:
        pipeline_failed(text, [status])
    stats.bytes_in = stream.source.count
    stats.bytes_out = scanner.forwarded
    stats.seconds = time.monotonic() - start
    return stats
