"""Extract an archive into a root directory: decompress → guard → GNU tar (pct §4.2.5).

The archive is decompressed in-process (see ``decode``), walked by the streaming header
scanner, and every member is approved by :class:`~shared.archive.targuard.ExtractGuard` before
tar receives its header (module ``targuard`` explains the threat model). tar runs with Proxmox's
flags (and larger records, see ``READ_RECORDS``), under ``lxc-usernsexec`` when an id map is
given, which shifts owners for unprivileged containers. Decompression runs in a reader thread,
the scan and the writes to tar in the calling thread, tar in its own process: three stages in
parallel, like ``zstd -dc | tar x``.

``keep`` picks members as they stream past (the guard's approved members, from the header scan
that runs anyway: no second pass), and :func:`apply_directory_entries` later gives existing
directories the attributes of picked directory members, under names the caller chooses. That is
how a restore gives the directories that exist before extraction (the mounted volumes' roots),
which ``--skip-old-files`` leaves alone, their backed-up owner, mode, times, ACLs and xattrs.

``select`` narrows what tar gets to some approved members (``vzdump extract`` of single paths)
and ``stop_when`` ends the extraction early, once the chosen members are out: tar then gets a
clean end of archive and the rest of the archive is never read.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    write_all,
    write_pieces,
)
from shared.archive.ratelimit import TokenBucket
from shared.archive.tarflags import COMMON_TAR_FLAGS
from shared.archive.tarformat import BLOCK, DIR, RECORD, Member, padded
from shared.archive.targuard import ExtractGuard
from shared.archive.tarscan import ScanSink, TarScanner
from shared.archive.tartotals import totals_line
from shared.archive.tarwrite import octal, pax_record, with_checksum
from shared.errors import CommandError
from shared.toolenv import tool_env

_QUEUE_DEPTH = 4  # decoded chunks in flight: bounds memory to a few MiB


@dataclass
class ExtractStats(TransferStats):
    """What :func:`extract` moved, and the members ``keep`` picked, in archive order."""

    kept: list[Member] = field(default_factory=list)
    stopped_early: bool = False  # ``stop_when`` ended it before the end of the archive


# tar reads its archive in records, 10 KiB by default: a hundred reads for every MiB this
# process puts into tar's 1 MiB pipe (``grow_pipe``), and as many small writes into the files.
# Whole 1 MiB records cut a ``pct create`` of a 200 MiB template from 0.99 s to 0.78 s on the
# reference VM (create and destroy, paired runs). ``--read-full-records`` makes tar fill each
# record from the pipe's short reads; the last, short one ends the archive as before. tar's
# "Total bytes read" would then count whole 1 MiB records: ``_TotalsRead`` writes the exact one.
READ_RECORDS = ["--blocking-factor=2048", "--read-full-records"]


# Files got back onto the host are data: setuid and setgid bits go (the scanner clears them in
# the headers tar gets), and so do file capabilities (security.capability), or a backup's
# setuid-root shell would be one on the host. The other bits stay as they were, the sticky bit
# too: tar's own --no-same-permissions dropped it, and a backup's /tmp came out world-writable
# without it. tar runs with umask 022 (AS_DATA_UMASK): the directories it makes on the way to
# a chosen path, which the archive does not give it, are 0755 as with a plain ``tar x`` (they
# were 0777 under the umask 0 that --no-same-permissions needed).
AS_DATA = ["--xattrs-exclude=security.*"]
AS_DATA_UMASK = 0o022


def tar_extract_command(
    rootdir: Path | str, idmap: Sequence[IdMapEntry] | None, *, as_data: bool = False
) -> list[str]:
    argv = ["tar", "xpf", "-", "--totals", *COMMON_TAR_FLAGS, *READ_RECORDS]
    argv += ["-C", str(rootdir), "--skip-old-files", "--anchored", "--exclude", "./dev/*"]
    if as_data:
        argv += AS_DATA
    return usernsexec_argv(idmap) + argv


class _Chain(ScanSink):
    """``skip`` drops members first (the guard keeps no state of what tar never sees); then
    the guard; then ``select`` (which also hears where each of its members ends); ``keep``
    records the members that reach tar that it picks."""

    def __init__(
        self,
        guard: ExtractGuard,
        keep: Callable[[Member], bool],
        kept: list[Member],
        skip: Callable[[Member], bool],
        select: ScanSink | None,
    ) -> None:
        self._guard = guard.member
        self._keep = keep
        self._kept = kept
        self._skip = skip
        self._select = select

    def member(self, member: Member) -> bool:
        if self._skip(member) or not self._guard(member):
            return False
        if self._select is not None and not self._select.member(member):
            return False
        if self._keep(member):
            self._kept.append(member)
        return True

    def member_end(self, member: Member) -> None:
        if self._select is not None:
            self._select.member_end(member)


def _never(member: Member) -> bool:
    return False


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
    keep: Callable[[Member], bool] | None = None,
    skip: Callable[[Member], bool] | None = None,
    select: ScanSink | None = None,
    stop_when: Callable[[], bool] | None = None,
    drop_devices: bool = False,
    cwd: str | None = None,
    allow_devices: bool | None = None,
    as_data: bool = False,
) -> ExtractStats:
    """Extract ``source`` (a path, or a binary stream such as stdin) into ``rootdir``.

    ``compression`` None detects it (extension of a path, magic bytes of a stream). The
    bandwidth limit applies to the archive as read, as ``cstream`` does in Proxmox. ``progress``
    gets the archive bytes read so far; ``log`` gets tar's output lines (``Total bytes read``)
    and the guard's warnings. ``keep`` is asked about every member the guard lets through to tar
    (from the calling thread, before tar gets the member); those it answers True for are
    returned in ``kept`` with their header block and pax records (a stateful ``keep`` bounds
    how many). ``skip`` is asked about every member before the guard; those it answers True
    for never reach the guard, tar or ``keep``. ``select`` is asked about every member the
    guard approved (False: tar never sees it) and told where each one it took ends;
    ``stop_when`` is asked after every chunk handed to tar: True ends the archive for tar
    there and stops reading (``stopped_early``). ``drop_devices`` leaves device nodes out
    with a warning instead of failing (as ``ignore_unpack_errors`` does); device nodes are
    allowed where no id map confines them (a privileged restore) unless ``allow_devices``
    says otherwise. ``cwd`` is entered (as root, before tar takes on ``idmap``) and a relative
    ``rootdir`` is taken from there: a directory that tar's own ids could not reach by path,
    e.g. ``/proc/<pid>/fd/<n>``. ``as_data`` drops setuid/setgid bits and file capabilities
    (``AS_DATA``): files got back onto the host. Returns bytes read (``bytes_in``) and fed to tar
    (``bytes_out``).
    """
    start = time.monotonic()
    stats = ExtractStats()
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def warn(message: str) -> None:
        stats.warnings.append(message)
        lines.put(message)

    stream = open_decoded(source, compression, bucket=TokenBucket.from_kib(bwlimit_kib))
    reader = _Reader(stream)
    argv = tar_extract_command(rootdir, idmap, as_data=as_data)
    text = command_text([argv])
    drop = drop_devices or ignore_unpack_errors
    devices = not idmap if allow_devices is None else allow_devices
    guard = ExtractGuard(allow_devices=devices, drop_devices=drop, warn=warn)
    sink: ScanSink = guard
    if keep is not None or skip is not None or select is not None:
        sink = _Chain(guard, keep or _never, stats.kept, skip or _never, select)
    scanner = TarScanner(sink, forward=True, strip_setid=as_data)
    try:
        tar = spawn(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            umask=AS_DATA_UMASK if as_data else -1,
        )
    except OSError as err:
        reader.stop()
        raise CommandError(f"command '{text}' failed: {err.strerror}") from None
    assert tar.stdin is not None and tar.stdout is not None
    tar_log = _TotalsRead(log, scanner)
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
                elif stop_when is not None and stop_when():
                    _end_archive(tar.stdin.fileno(), scanner.forwarded)
                    stats.stopped_early = True
                    break
            drain(lines, tar_log)
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
        drain(lines, tar_log)
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


class _TotalsRead:
    """The log callback for tar's output that writes tar's ``Total bytes read`` line with the
    exact count: tar counts the whole 1 MiB records it read (``READ_RECORDS``), so a 2 MiB
    template would show as 3 MiB. The count is what tar was given, and the rate is timed
    from tar's start, as tar does."""

    PREFIX = "Total bytes read: "

    def __init__(self, log: LogFn, scanner: TarScanner) -> None:
        self.log = log
        self.scanner = scanner
        self.start = time.monotonic()

    def __call__(self, line: str) -> None:
        if line.startswith(self.PREFIX):
            seconds = time.monotonic() - self.start
            line = totals_line(self.PREFIX[:-2], self.scanner.forwarded, seconds)
        self.log(line)


def _end_archive(fd: int, forwarded: int) -> None:
    """Two zero blocks, padded to tar's record size: the clean end of a cut-short stream."""
    tail = 2 * BLOCK
    with contextlib.suppress(BrokenPipeError):  # tar may stop at the first zero block
        write_all(fd, bytes(tail + (-(forwarded + tail) % RECORD)))


# --- attributes of existing directories --------------------------------------------------------

# pax records that describe a directory's attributes; everything else (path, linkpath, size,
# sparse maps, GNU.dumpdir, ...) stays behind, so the entry can only ever set attributes.
_ATTRIBUTE_KEYS = frozenset(
    {
        b"atime",
        b"mtime",
        b"uid",
        b"gid",
        b"uname",
        b"gname",
        b"SCHILY.acl.access",
        b"SCHILY.acl.default",
        b"SCHILY.acl.ace",
        b"RHT.security.selinux",
    }
)
_ATTRIBUTE_PREFIXES = (b"SCHILY.xattr.", b"LIBARCHIVE.xattr.")


def directory_entry(member: Member, parts: Sequence[bytes]) -> bytes:
    """A POSIX directory entry named ``./<parts>/`` with ``member``'s attributes.

    Only the attribute fields survive: mode, owner, mtime from the header block, and the pax
    records of ``_ATTRIBUTE_KEYS``/``_ATTRIBUTE_PREFIXES``. The name is the caller's, in a pax
    ``path`` record (the ustar name field holds as much of it as fits, as GNU tar writes it).
    """
    name = b"/".join([b".", *parts]) + b"/"
    records = [pax_record(b"path", name)]
    records += [
        pax_record(key, value)
        for key, value in member.pax.items()
        if key in _ATTRIBUTE_KEYS or key.startswith(_ATTRIBUTE_PREFIXES)
    ]
    data = b"".join(records)
    pax = bytearray(BLOCK)
    pax[0:14] = b"././@PaxHeader"
    pax[100:124] = octal(0o644, 8) + octal(0, 8) + octal(0, 8)
    pax[124:148] = octal(len(data), 12) + octal(0, 12)
    pax[156:157] = b"x"
    pax[257:265] = b"ustar\x0000"

    src = member.header
    head = bytearray(BLOCK)
    head[0:100] = name[:100].ljust(100, b"\0")
    head[100:124] = src[100:124]  # mode, uid, gid
    head[124:136] = octal(0, 12)  # size
    head[136:148] = src[136:148]  # mtime
    head[156:157] = DIR
    head[257:265] = b"ustar\x0000"
    if src[257:262] == b"ustar":  # ustar and GNU headers carry uname/gname here
        head[265:329] = src[265:329]
    padding = bytes(padded(len(data)) - len(data))
    return with_checksum(pax) + data + padding + with_checksum(head)


def apply_directory_entries(
    rootdir: Path | str,
    entries: Sequence[tuple[Sequence[bytes], Member]],
    idmap: Sequence[IdMapEntry] | None,
) -> None:
    """Give existing directories below ``rootdir`` the attributes of archive members.

    Each ``(parts, member)`` sets mode, owner, times, ACLs and xattrs of ``rootdir/<parts>``
    from ``member`` (see :func:`directory_entry`: the name is ``parts``, never the member's).
    tar runs as for the extraction (same id map and flags) but without ``--skip-old-files``.
    The directories must be real ones the caller made; tar replaces a symlink in their place
    by a directory rather than following it, but follows symlinks above them.
    """
    if not entries:
        return
    skip = ("--skip-old-files", "--totals")
    argv = [a for a in tar_extract_command(rootdir, idmap) if a not in skip]
    data = b"".join(directory_entry(member, parts) for parts, member in entries)
    proc = subprocess.run(
        argv, input=data + bytes(2 * BLOCK), capture_output=True, check=False, env=tool_env()
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().replace("\n", "; ")
        raise CommandError(f"command '{command_text([argv])}' failed: {detail}")
