"""A small downloader: retries with backoff, conditional GET, Range resume, streaming with an
incremental digest and a progress callback. The HTTP exchange itself is
:mod:`shared.httpclient`'s (proxies from the environment, TLS, redirects, the bound on the
response headers).

Bodies are read raw (no content decoding, ``Accept-Encoding: identity``) straight into the
digest ring's buffers, so a ``.gz`` file arrives as it is stored and memory stays flat whatever
the file size.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import stallguard
from .digest import DigestRing
from .errors import DownloadError, StorageError
from .formats.digits import ascii_int
from .httpclient import (
    DEFAULT_TIMEOUT,
    Client,
    Response,
    Timeout,
    TransportError,
    describe_exception,
)
from .stallguard import StallGuard, shut_down
from .writeback import start_writeback

CHUNK_SIZE = 1 << 20
TRANSIENT_STATUS = frozenset({408, 425, 429})
# A server that stalls gives up after (1 + retries) * read timeout plus the backoff (about 50 s
# with httpclient.DEFAULT_TIMEOUT); one that trickles, bringing less than SUB_READ bytes in
# stallguard.STALL_LIMIT, is given up too.
SUB_READ = 64 << 10
DEFAULT_RETRIES = 2
# The disk starts writing every this many bytes, so that the fsync before the rename is short.
WRITEBACK_STEP = 8 << 20
# Kept free on the target file system: a download never fills a disk to the last byte.
MIN_FREE = 16 << 20

Hasher = Any  # a hashlib object: update(bytes), hexdigest()
HasherFactory = Callable[[], Hasher]
ProgressCallback = Callable[[int, "int | None"], None]
RetryCallback = Callable[[str, "HttpError", float], None]


class HttpError(DownloadError):
    """A failed transfer. ``status_line`` is ``404 Not Found`` or a short connection error."""

    def __init__(
        self,
        url: str,
        status_line: str,
        *,
        status: int | None = None,
        transient: bool = False,
        discard: bool = False,
    ) -> None:
        super().__init__(status_line)
        self.url = url
        self.status = status
        self.status_line = status_line
        self.transient = transient
        self.discard = discard  # the partial file is worthless (e.g. over the size limit)


class NoSpaceError(StorageError):
    """The target file system is (nearly) full: the partial file is better removed."""


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` further attempts after the first, waiting ``backoff * 2**n`` (capped)."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.backoff * (2**attempt)))


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back: the ETag and Last-Modified of the last fetch."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out

    def __bool__(self) -> bool:
        return bool(self.etag or self.last_modified)

    @classmethod
    def from_headers(cls, headers: Any) -> Validators:
        return cls(etag=headers.get("ETag"), last_modified=headers.get("Last-Modified"))


@dataclass
class FetchResult:
    url: str
    status: int
    reason: str
    not_modified: bool = False
    validators: Validators = field(default_factory=Validators)
    size: int = 0
    resumed_from: int = 0
    digest: str | None = None

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".strip()


def _content_range_start(value: str | None) -> int | None:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", value or "")
    return int(m.group(1)) if m else None


def _refuse_unless_own_file(path: Path, st: os.stat_result) -> None:
    """A partial file reopened under a known name must be ours: a regular file with one
    link, owned by the user we run as (root) - never a symlink or hard link planted there."""
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
        raise StorageError(
            f"refusing to write '{path}': not a regular file of ours "
            "(a symlink, hard link or foreign file); remove it and try again"
        )


def open_partial(path: Path, *, truncate: bool) -> IO[bytes]:
    """Open ``path`` for writing without following a symlink (O_NOFOLLOW) and check what was
    opened (fstat, so nothing can be swapped in between)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        raise StorageError(f"unable to open '{path}': {err.strerror}") from None
    try:
        _refuse_unless_own_file(path, os.fstat(fd))
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r+b" if not truncate else "wb")


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


class _Target:
    """The file being written plus the digest of what it holds so far."""

    def __init__(self, path: Path, hasher_factory: HasherFactory | None, resume: bool) -> None:
        self.path = path
        self.factory = hasher_factory
        self.resume = resume
        self.hasher: Hasher | None = None
        self.hashed = 0

    def offset(self) -> int:
        if not self.resume:
            return 0
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return 0
        _refuse_unless_own_file(self.path, st)
        return st.st_size

    def open(self, offset: int) -> IO[bytes]:
        """Open for writing at ``offset`` (0 truncates) with the digest caught up to it."""
        if offset == 0:
            self.hasher = self.factory() if self.factory else None
            self.hashed = 0
            return open_partial(self.path, truncate=True)
        out = open_partial(self.path, truncate=False)
        try:
            if self.factory is not None and (self.hasher is None or self.hashed != offset):
                self.hasher, self.hashed = self.factory(), 0
                while self.hashed < offset and (
                    chunk := os.pread(
                        out.fileno(), min(CHUNK_SIZE, offset - self.hashed), self.hashed
                    )
                ):
                    self.hasher.update(chunk)
                    self.hashed += len(chunk)
            out.seek(offset)
            out.truncate()
        except BaseException:
            out.close()
            raise
        return out

    def drained(self, ring: DigestRing) -> None:
        """Wait for the ring's worker: every byte written so far is then in the digest."""
        self.hashed += ring.drain()


class Downloader:
    """Fetch URLs to files. One instance may be reused."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        chunk_size: int = CHUNK_SIZE,
        on_retry: RetryCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
        min_free: int = MIN_FREE,
    ) -> None:
        """``timeout``: (connect, read) seconds; the read timeout bounds each wait for data."""
        self.client = client or Client()
        self.timeout = timeout
        self.min_free = min_free
        self.retry = retry or RetryPolicy()
        self.chunk_size = chunk_size
        self.on_retry = on_retry
        self.sleep = sleep

    def fetch(
        self,
        url: str,
        dest: Path,
        *,
        validators: Validators | None = None,
        resume: bool = False,
        max_size: int | None = None,
        hasher_factory: HasherFactory | None = None,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
    ) -> FetchResult:
        """GET ``url`` into ``dest``; retry transient failures (connection errors, 5xx).

        ``resume``: continue an existing ``dest`` with a Range request (checked: 206 with a
        matching Content-Range, else the file restarts from 0); a retry after a dropped
        connection then also continues where it stopped. ``validators``: conditional GET; a
        304 returns ``not_modified`` and leaves ``dest`` alone. ``deadline``: seconds the
        whole fetch, retries included, may take.
        """
        target = _Target(dest, hasher_factory, resume)
        until = None if deadline is None else time.monotonic() + deadline
        attempt = 0
        while True:
            try:
                return self._attempt(url, target, validators, max_size, progress, until)
            except HttpError as err:
                if not err.transient or attempt >= self.retry.retries:
                    raise
                delay = self.retry.delay(attempt)
                if until is not None and time.monotonic() + delay > until:
                    raise
                attempt += 1
                if self.on_retry is not None:
                    self.on_retry(url, err, delay)
                self.sleep(delay)

    def _get(self, url: str, headers: dict[str, str]) -> Response:
        try:
            return self.client.request("GET", url, headers=headers, timeout=self.timeout)
        except TransportError as exc:
            raise HttpError(url, exc.reason, transient=exc.transient) from exc

    def _attempt(
        self,
        url: str,
        target: _Target,
        validators: Validators | None,
        max_size: int | None,
        progress: ProgressCallback | None,
        until: float | None = None,
    ) -> FetchResult:
        offset = target.offset()
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if validators and not offset:
            headers.update(validators.headers())
        with self._get(url, headers) as resp:
            status, reason = resp.status, resp.reason
            if status == 304:
                if offset or not validators:
                    raise HttpError(url, f"{status} {reason} to an unconditional request")
                return FetchResult(url, status, reason, True, Validators.from_headers(resp.headers))
            if status == 416 and offset:
                # Our partial file is not a prefix the server can continue: start over.
                target.open(0).close()
                return self._attempt(url, target, validators, max_size, progress, until)
            if status >= 400:
                transient = status >= 500 or status in TRANSIENT_STATUS
                line = f"{status} {reason}".strip()
                raise HttpError(url, line, status=status, transient=transient)
            if offset and status == 206:
                if _content_range_start(resp.headers.get("Content-Range")) != offset:
                    # Some other part of the file: useless; ask again for all of it.
                    target.open(0).close()
                    return self._attempt(url, target, validators, max_size, progress, until)
            elif offset:
                offset = 0  # the server ignored the range: the body is the whole file
            elif status == 206:
                raise HttpError(url, f"{status} {reason} without a Range request", status=status)
            size = self._stream(url, resp, target, offset, max_size, progress, until)
            digest = target.hasher.hexdigest() if target.hasher is not None else None
            valid = Validators.from_headers(resp.headers)
            return FetchResult(url, status, reason, False, valid, size, offset, digest)

    def _stream(
        self,
        url: str,
        resp: Response,
        target: _Target,
        offset: int,
        max_size: int | None,
        progress: ProgressCallback | None,
        until: float | None = None,
    ) -> int:
        length = resp.headers.get("Content-Length")
        expected = ascii_int(length) if length else None  # a server's '²' raised ValueError
        total = offset + expected if expected is not None else None
        if max_size is not None and total is not None and total > max_size:
            raise HttpError(url, f"file too large ({total} bytes, limit {max_size})", discard=True)
        if expected is not None:
            self._check_space(target.path, expected)
        done = offset
        limit = max(stallguard.STALL_LIMIT, 4 * self.timeout[1])
        guard = StallGuard(shut_down(resp.socket), limit, until)
        with (
            guard,
            target.open(offset) as fh,
            DigestRing(target.hasher, size=self.chunk_size) as ring,
        ):
            sink = _Sink(fh, target.path, offset)
            if progress is not None:
                progress(done, total)
            try:
                while True:
                    buf = ring.take()
                    n = _read_into(url, resp.readinto, buf, guard)
                    if not n:
                        ring.lend(buf, 0)
                        break
                    if max_size is not None and done + n > max_size:
                        raise HttpError(
                            url, f"file too large (limit {max_size} bytes)", discard=True
                        )
                    self._check_space(target.path, n)  # others write to this disk too
                    sink.write(buf, n)
                    ring.lend(buf, n)  # hashed on the worker while the next chunk arrives
                    done += n
                    if progress is not None:
                        progress(done, total)
            finally:
                target.drained(ring)
            self._flush(fh, target.path)
        if total is not None and done != total:
            raise HttpError(url, f"short read ({done} of {total} bytes)", transient=True)
        return done

    def _check_space(self, path: Path, needed: int) -> None:
        """Refuse to write ``needed`` more bytes unless ``min_free`` stays free afterwards."""
        try:
            free = free_bytes(path.parent)
        except OSError:
            return  # no statvfs: the write itself will tell
        if needed + self.min_free > free:
            raise NoSpaceError(
                f"not enough free space in '{path.parent}': {needed} more bytes needed, "
                f"{free} available ({self.min_free} kept free)"
            )

    @staticmethod
    def _flush(fh: IO[bytes], path: Path) -> None:
        try:
            fh.flush()
        except OSError as err:
            raise NoSpaceError(f"unable to write '{path}': {err.strerror}") from None


def _read_into(
    url: str, readinto: Callable[[memoryview], int], buf: bytearray, guard: StallGuard
) -> int:
    """Fill ``buf`` from the body as far as it goes; 0 at the end of the body. In reads of
    ``SUB_READ`` bytes: each completed one tells the guard the transfer still moves."""
    filled = 0
    try:
        with memoryview(buf) as view:
            while filled < len(buf):
                n = readinto(view[filled : filled + SUB_READ])
                if not n:
                    break
                filled += n
                guard.progress()
    except (http.client.HTTPException, OSError) as exc:
        if guard.fired:
            raise _stalled(url, guard) from exc
        raise HttpError(url, describe_exception(exc), transient=True) from exc
    if guard.fired:
        raise _stalled(url, guard)
    return filled


def _stalled(url: str, guard: StallGuard) -> HttpError:
    if guard.overdue:
        return HttpError(url, "transfer too slow: not done by its deadline")
    kib = SUB_READ >> 10
    return HttpError(
        url, f"transfer stalled (less than {kib} KiB in {guard.limit:.0f} s)", transient=True
    )


class _Sink:
    """Writes chunks to the partial file and has the disk start on them every
    ``WRITEBACK_STEP`` bytes (the fsync before the rename then finds little left to do)."""

    def __init__(self, fh: IO[bytes], path: Path, offset: int) -> None:
        self.fh, self.path = fh, path
        self.written = self.synced = offset

    def write(self, buf: bytearray, length: int) -> None:
        try:
            with memoryview(buf) as view, view[:length] as part:
                self.fh.write(part)
        except OSError as err:
            raise NoSpaceError(f"unable to write '{self.path}': {err.strerror}") from None
        self.written += length
        if self.written - self.synced >= WRITEBACK_STEP:
            start_writeback(self.fh.fileno(), self.synced, self.written - self.synced)
            self.synced = self.written


def hash_file(path: Path, algorithm: str, chunk_size: int = CHUNK_SIZE) -> str:
    """The hex digest of a file, read in chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)
    return hasher.hexdigest()
