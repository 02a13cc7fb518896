"""The vzdump archive of a container (vzdump.md §3): its first members, written and read back.

An archive is a tar stream that starts with the backed-up config ``./etc/vzdump/pct.conf``
and the firewall config ``./etc/vzdump/pct.fw`` (empty: none), in that order, taken from a
directory of their own (:func:`write_members`); the data tree (``./`` and the mount points)
follows. Each member appears once: the data tree is the container's own, so a copy of
``/etc/vzdump/pct.conf`` in it is the container's file, which a restore deletes afterwards.

Reading (:func:`read_members`) decompresses only as far as the config members reach, from a
path or a one-way stream; a stream is wrapped in :class:`ReplayableStream` first so that the
extraction sees every byte again. The extraction leaves the leading config members out and
copes with archives written before the data tree was kept apart: their suspend-mode data
tree (vzdump's temporary directory) held the config members again, as hard links to
themselves (:class:`DataTreeFilter`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from shared.archive.codecs import Compression
from shared.archive.decode import Source
from shared.archive.members import scan_until
from shared.archive.pipeline import CHUNK
from shared.archive.tarformat import AREG, CONT, LNK, REG, Member
from shared.archive.targuard import split_name
from shared.archive.tarscan import ScanSink
from shared.errors import ArchiveError
from shared.safefile import READ_DIR

CONFIG_MEMBER = "./etc/vzdump/pct.conf"
FIREWALL_MEMBER = "./etc/vzdump/pct.fw"
MEMBERS = (CONFIG_MEMBER, FIREWALL_MEMBER)  # the first members, in this order
CONFIG_PATHS = tuple(name[1:] for name in MEMBERS)  # their copies inside a restored root
MAX_CONFIG = 16 << 20  # a container config larger than this is not a config
RECORD_LIMIT = 8 << 20  # stream bytes kept while looking for the config (it is the 1st member)

Parts = tuple[bytes, ...]
CONFIG_PARTS: Parts = (b"etc", b"vzdump", b"pct.conf")
_FIREWALL_PARTS: Parts = (b"etc", b"vzdump", b"pct.fw")
_MEMBER_PARTS = (CONFIG_PARTS, _FIREWALL_PARTS)


def config_member_parts(member: Member) -> Parts | None:
    """The member's split name when it is named like a config member, else None."""
    parts = split_name(member.name)
    return parts if parts in _MEMBER_PARTS else None


# --- writing ----------------------------------------------------------------------------------


_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_members(directory: Path, config: bytes, firewall: bytes, owner: tuple[int, int]) -> None:
    """The config members below ``directory``, empty or made here (tar's ``--directory`` for
    :data:`MEMBERS`), owned by ``owner``, the container's root (tar of an unprivileged container
    runs as that user, and so ``directory`` is that user's).

    ``directory`` must not be the data tree's: tar would meet the same files again there.
    Everything is made through descriptors, never by a name a second time, and nothing that
    was already there is used: whatever else runs as that uid and reaches ``directory`` (the
    root of another container on the same id map, through a dump directory shared into it)
    could plant links there, and the config was written over the host file a link named, and
    that file given to the uid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fds = [os.open(directory, READ_DIR)]
    try:
        for name in ("etc", "vzdump"):
            os.mkdir(name, 0o755, dir_fd=fds[-1])
            fds.append(os.open(name, READ_DIR, dir_fd=fds[-1]))
        for name, data in (("pct.conf", config), ("pct.fw", firewall)):
            with os.fdopen(os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=fds[-1]), "wb") as fh:
                fh.write(data)
                os.fchown(fh.fileno(), *owner)
        for fd in fds[1:]:
            os.fchown(fd, *owner)
    except FileExistsError as err:
        raise ArchiveError(
            f"unable to write the config members into '{directory}' - '{err.filename}' is "
            "there already: something else writes into this temporary directory"
        ) from None
    finally:
        for fd in fds:
            os.close(fd)


# --- reading ----------------------------------------------------------------------------------


class ReplayableStream:
    """A one-way stream (stdin) read twice: the first pass is kept and handed out again.

    Until :meth:`rewind`, reads come from the stream and are recorded, at most ``limit`` bytes
    (then reads see end-of-file and ``overflow`` is set). After it, the recording is replayed
    and the stream continues where the first pass stopped.
    """

    def __init__(self, raw: IO[bytes], limit: int = RECORD_LIMIT) -> None:
        self._raw = raw
        try:
            self._fd: int | None = raw.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._limit = limit
        self._kept = bytearray()
        self._pos = 0  # replay position in _kept
        self._recording = True
        self._lock = threading.Lock()  # xz/lzo decoders read from a feeder thread
        self.overflow = False

    def _read_raw(self, size: int) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, size)
        return self._raw.read(size) or b""

    def read(self, size: int = CHUNK) -> bytes:
        with self._lock:
            if self._recording:
                room = self._limit - len(self._kept)
                if room <= 0:
                    self.overflow = True
                    return b""
                data = self._read_raw(min(size, room))
                self._kept += data
                return data
            if self._pos < len(self._kept):
                data = bytes(self._kept[self._pos : self._pos + size])
                self._pos += len(data)
                if self._pos == len(self._kept):
                    self._kept = bytearray()  # replayed: free it
                    self._pos = 0
                return data
        return self._read_raw(size)

    def rewind(self) -> None:
        with self._lock:
            self._recording = False


class _MemberReader(ScanSink):
    """The first pct.conf and pct.fw; done at the first other member once pct.conf is found."""

    def __init__(self) -> None:
        self.found: dict[Parts, bytearray] = {}
        self._current = bytearray()
        self.done = False

    def member(self, member: Member) -> bool:
        kind = config_member_parts(member)
        if kind is None or kind in self.found or member.type not in (REG, AREG, CONT):
            if kind is None and CONFIG_PARTS in self.found:
                self.done = True  # both come first: the data tree has begun
            return False
        if member.sparse:
            raise ArchiveError(f"unsupported sparse config member '{member.display}'")
        if member.size > MAX_CONFIG:
            raise ArchiveError(f"config member '{member.display}' is too large")
        self._current = self.found[kind] = bytearray()
        return True

    def data(self, piece: memoryview) -> None:
        self._current += piece

    def member_end(self, member: Member) -> None:
        self.done = len(self.found) == 2


def _scan_members(source: Source, compression: Compression | None) -> _MemberReader:
    sink = _MemberReader()
    scan_until(source, sink, lambda: sink.done, compression=compression)
    return sink


def read_members(
    source: Source | ReplayableStream, compression: Compression | None = None
) -> tuple[bytes | None, bytes | None]:
    """``pct.conf`` (None: none) and ``pct.fw`` (None: none or empty) of an archive.

    Decompresses only as far as needed (``compression`` None: from the name or magic bytes).
    A :class:`ReplayableStream` is rewound afterwards; one whose config is not within its
    recording limit reads as an archive without config (the extraction still gets every byte).
    """
    if not isinstance(source, ReplayableStream):
        sink = _scan_members(source, compression)
    else:
        try:
            sink = _scan_members(cast(IO[bytes], source), compression)
        except ArchiveError:
            if source.overflow:
                return None, None
            raise
        finally:
            source.rewind()
    conf, firewall = sink.found.get(CONFIG_PARTS), sink.found.get(_FIREWALL_PARTS)
    return (bytes(conf) if conf is not None else None, bytes(firewall) if firewall else None)


# --- the data tree ----------------------------------------------------------------------------


class DataTreeFilter:
    """``skip`` for the extraction: what of an archive is not the container's data tree.

    - The leading config members: Proxmox extracts them and deletes them afterwards, but the
      directories tar makes for them (``/etc``, ``/etc/vzdump``) would then exist when the
      archive's own entries arrive, and ``--skip-old-files`` would skip those entries (mode,
      owner and times of ``/etc`` lost). Left out, every directory is made from its own entry.
    - A hard link to a config member that the data tree has not itself brought: the
      suspend-mode archives of earlier versions hold the config members again in the data
      tree, as hard links to themselves, which tar cannot make (``Cannot hard link``).
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._in_tree = False
        self._extracted: set[Parts] = set()  # config-named regular files of the data tree

    def __call__(self, member: Member) -> bool:
        kind = config_member_parts(member)
        if not self._in_tree:
            if kind is not None:
                return True
            self._in_tree = True
        if member.type == LNK and self._links_to_skipped(member):
            self._log(f"skipping '{member.display}': a hard link to a config member")
            return True
        if kind is not None and member.type in (REG, AREG, CONT):
            self._extracted.add(kind)
        return False

    def _links_to_skipped(self, member: Member) -> bool:
        targets = {split_name(name) for name in member.linknames or (member.linkname,)}
        return any(t in _MEMBER_PARTS and t not in self._extracted for t in targets)
