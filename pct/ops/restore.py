"""``pct restore``: a container from a vzdump archive (pct.md §4.1, §4.3; vzdump.md §3).

1. The backed-up config (and firewall config) come from the archive's first
   ``./etc/vzdump/pct.conf`` (``pct.fw``) member; only the start of the archive is decompressed
   for them. From stdin, the bytes read for that are kept and replayed to the extraction
   (:class:`ReplayableStream`), so stdin restores see the backed-up config before extraction.
2. Layout: simple mode (no ``--rootfs``/``--mpN``) recreates every volume mount point of the
   backup with its ``size=`` on ``--storage`` and appends bind/device mount points after the
   extraction; advanced mode creates the command line's layout before extraction, so files land
   where the new layout puts them.
3. The new volumes are allocated, mounted at ``<lxcpath>/<vmid>/rootfs`` and the archive is
   extracted into them by the guarded extractor (``shared.archive.tarextract``), under the new
   config's id map, without its leading config members (:class:`ExtractionStream` says why).
   The directories that exist before extraction (the root, the volume mount points and the
   directories on the way to a mount point) are skipped by tar's ``--skip-old-files``; their
   archive entries are picked as they stream past and applied afterwards
   (:func:`premade_dirs`). The configs are merged; copies of the config members in the data
   tree are deleted (chrooted, so links in the archive cannot redirect it); the distro's
   template fixups run.
4. Commit: the config is written, the firewall file copied, old volumes freed.

Unlike Proxmox, ``--force`` never loses the old container: its config stays as it is apart
from ``lock: create`` while the new volumes (new disk indexes beside the old ones) are filled;
only when extraction and merge succeeded is the new config written under the config lock, and
only then are the old volumes freed. Any failure frees the new volumes and removes the lock
again, or, for a new id, the placeholder config.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from shared import atomic, paths, signals
from shared.archive.codecs import Compression, compression_from_name
from shared.archive.decode import DecodedStream, Source, open_decoded
from shared.archive.members import MAX_CONFIG, scan_until
from shared.archive.pipeline import CHUNK, ProgressFn
from shared.archive.ratelimit import TokenBucket
from shared.archive.tarextract import apply_directory_entries, extract
from shared.archive.tarformat import AREG, BLOCK, CONT, REG, Member, display_name
from shared.archive.targuard import split_name
from shared.archive.tarscan import ScanSink, TarScanner
from shared.backups.resticstream import open_snapshot
from shared.ctconfig import store
from shared.ctconfig.config import Config, Section, parse_config
from shared.ctconfig.mountpoints import MountPoint, random_mac
from shared.ctconfig.options import NET_SCHEMA
from shared.ctconfig.pending import parse_values
from shared.errors import (
    AlreadyExistsError,
    ArchiveError,
    CommandError,
    ConfigError,
    CtkitError,
    NotFoundError,
    StateError,
    StorageError,
)
from shared.formats.types import FormatError
from shared.guest.chroot import run_in_root
from shared.runtime import lifecycle, lxcapi
from shared.runtime.beneath import open_beneath
from shared.runtime.ctview import config_idmap
from shared.runtime.idcheck import check_subids
from shared.storage.api import backup_path, restic_volume
from shared.storage.volid import is_volume_id
from shared.tasklog import Progress

from .provision import (
    CREATE_LOCK,
    Allocation,
    allocate,
    apply_defaults,
    check_rootdir_storages,
    commit_config,
    complete_given_nets,
    convert_to_template,
    create_locked_config,
    detect_guest,
    exists_message,
    free_replaced_volumes,
    lock_existing,
    normalize_disk_params,
    prefixed,
    release_create_lock,
    remove_locked_config,
    remove_staging_dirs,
    staged,
)
from .restore_check import check_merged, drop_invalid
from .restore_trust import drop_untrusted

Log = Callable[[str], None]
STDIN = "-"
CONFIG_PARTS = (b"etc", b"vzdump", b"pct.conf")
FIREWALL_PARTS = (b"etc", b"vzdump", b"pct.fw")
CONFIG_PATH = "/etc/vzdump/pct.conf"  # inside the restored root
FIREWALL_PATH = "/etc/vzdump/pct.fw"
RECORD_LIMIT = 8 << 20  # stdin bytes kept while looking for the config (it is the 1st member)
# backed-up keys never copied into the restored config (pct.md §4.3.7; lock and pending added:
# a hand-made archive must not lock the new container or smuggle pending changes in)
EXCLUDED_KEYS = frozenset(
    {"digest", "rootfs", "snapshots", "unprivileged", "parent", "template", "lock", "snapstate"}
)
EXCLUDED_KEY_RE = re.compile(r"(?:mp|unused)\d+")
NET_KEY_RE = re.compile(r"net\d+")
BANNER = "###########################################################"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class RestoreRequest:
    vmid: int
    archive: str  # backup volume id, path, or "-" for stdin
    params: dict[str, str] = field(default_factory=dict)  # config options, raw CLI text
    storage: str = "local"
    force: bool = False
    unique: bool = False
    unprivileged: bool | None = None  # None: as in the backup
    ignore_unpack_errors: bool = False
    bwlimit: int | None = None  # KiB/s
    start: bool = False
    is_root: bool = True  # bind/device mount points and raw lxc keys are root's
    trust_archive: bool = False  # keep what reaches outside the container (restore_trust)
    stdin: IO[bytes] | None = None  # the stream for "-" (default: sys.stdin)
    progress: bool = False  # progress display on stderr


# --- the archive ------------------------------------------------------------------------------


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


def _config_member(member: Member) -> tuple[bytes, ...] | None:
    parts = split_name(member.name)
    return parts if parts in (CONFIG_PARTS, FIREWALL_PARTS) else None


class _ConfigReader(ScanSink):
    """The first pct.conf and pct.fw; done at the first other member once pct.conf is found."""

    def __init__(self) -> None:
        self.found: dict[tuple[bytes, ...], bytearray] = {}
        self._current = bytearray()
        self.done = False

    def member(self, member: Member) -> bool:
        kind = _config_member(member)
        if kind is None or kind in self.found or member.type not in (REG, AREG, CONT):
            if kind is None and CONFIG_PARTS in self.found:
                self.done = True  # vzdump writes both first: the data tree has begun
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


def read_config_members(
    source: Source, compression: Compression | None = None
) -> tuple[bytes | None, bytes | None]:
    """``pct.conf`` and ``pct.fw`` of a vzdump archive; decompresses only as far as needed."""
    sink = _ConfigReader()
    scan_until(source, sink, lambda: sink.done, compression=compression)
    conf, firewall = sink.found.get(CONFIG_PARTS), sink.found.get(FIREWALL_PARTS)
    return (bytes(conf) if conf is not None else None, bytes(firewall) if firewall else None)


class _LeadingConfig(ScanSink):
    """Refuses the config members at the start; the first other member ends the filtering."""

    def __init__(self) -> None:
        self.first: Member | None = None

    def member(self, member: Member) -> bool:
        if self.first is None and _config_member(member) is not None:
            return False
        if self.first is None:
            self.first = member
        return True


class ExtractionStream:
    """What tar reads: the decompressed archive without its leading config members.

    Proxmox extracts those members and deletes them afterwards. The directories tar creates
    for them (``/etc``, ``/etc/vzdump``) then exist when the archive's own entries arrive,
    and ``--skip-old-files`` skips those entries: mode, owner and times of ``/etc`` are lost.
    Left out, every directory is made from its own entry (the ones that exist before
    extraction are dealt with by :func:`premade_dirs`).
    """

    def __init__(self, decoded: DecodedStream, progress: ProgressFn | None) -> None:
        self._decoded = decoded
        self._progress = progress
        self._sink = _LeadingConfig()
        self._scanner: TarScanner | None = TarScanner(self._sink, forward=True)
        self._consumed = 0  # archive bytes given to the scanner
        self._pending = b""
        self._eof = False

    def read(self, size: int = CHUNK) -> bytes:
        while not self._pending and not self._eof:
            self._pending = self._next_chunk()
        if len(self._pending) <= size:
            data, self._pending = self._pending, b""  # the whole chunk, without a copy
            return data
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def _next_chunk(self) -> bytes:
        data = self._decoded.read(CHUNK)
        if self._progress is not None:
            self._progress(self._decoded.source.count)
        if not data:
            self._eof = True
            return b""
        return data if self._scanner is None else self._filter(data)

    def _filter(self, data: bytes) -> bytes:
        """Feed whole blocks until the first kept member's header is through; pass the rest."""
        assert self._scanner is not None
        view, pos, out = memoryview(data), 0, bytearray()
        while pos < len(view):
            take = min(BLOCK - self._consumed % BLOCK, len(view) - pos)
            self._scanner.feed(view[pos : pos + take])
            pos += take
            self._consumed += take
            for piece in self._scanner.take_output():
                out += piece
            if self._sink.first is not None or self._scanner.ended:
                self._scanner = None
                out += view[pos:]
                break
        return bytes(out)

    def close(self) -> None:
        self._decoded.close()


@dataclass
class ArchiveSource:
    """The archive as given (``label``) and where its bytes come from."""

    label: str
    path: Path | None = None  # None: stdin
    stream: ReplayableStream | None = None
    compression: Compression | None = None  # None: sniffed from the magic bytes

    @property
    def is_stdin(self) -> bool:
        return self.path is None and self.label == STDIN

    def size(self) -> int | None:
        return self.path.stat().st_size if self.path is not None else None

    def _source(self) -> Source:
        if self.path is not None:
            return self.path
        assert self.stream is not None
        return cast(IO[bytes], self.stream)

    def read_config(self) -> tuple[bytes | None, bytes | None]:
        """``pct.conf`` (None: the archive has none) and ``pct.fw`` (None: none or empty)."""
        if self.stream is None:
            return read_config_members(self._source(), self.compression)
        try:
            return read_config_members(self._source())
        except ArchiveError:
            if self.stream.overflow:
                return None, None  # not at the start: extraction still gets every byte
            raise
        finally:
            self.stream.rewind()

    def open_extraction(self, bwlimit: int | None, progress: ProgressFn | None) -> ExtractionStream:
        """The stream to extract; ``bwlimit`` (KiB/s) applies to the archive as read."""
        bucket = TokenBucket.from_kib(bwlimit)
        return ExtractionStream(
            open_decoded(self._source(), self.compression, bucket=bucket), progress
        )


def open_source(archive: str, stdin: IO[bytes] | None = None) -> ArchiveSource:
    """A backup volume id, a path, or ``-`` for stdin; compression from the extension."""
    if archive == STDIN:
        raw = stdin if stdin is not None else sys.stdin.buffer
        return ArchiveSource(STDIN, stream=ReplayableStream(raw))
    if restic := restic_volume(archive):
        # a restic snapshot as a vzdump tar stream, read like stdin (shared.backups.resticstream)
        snapshot = cast(IO[bytes], open_snapshot(*restic))
        return ArchiveSource(
            archive, stream=ReplayableStream(snapshot), compression=Compression.NONE
        )
    path = backup_path(archive) if is_volume_id(archive) else Path(archive)
    if not path.is_file():
        raise NotFoundError(f"can't find file '{archive}'")
    return ArchiveSource(archive, path.absolute(), compression=compression_from_name(path.name))


def recover_config(
    source: ArchiveSource, vmid: int, log: Log
) -> tuple[Config | None, bytes | None]:
    """The backed-up config (no snapshots, no pending changes; None: stdin without one) and
    the backed-up firewall config (None: none or empty)."""
    log(f"recovering backed-up configuration from '{source.label}'")
    raw, firewall = source.read_config()
    if raw is None:
        if source.is_stdin:
            return None, None
        raise ArchiveError("ERROR: archive contains no configuration file")
    backup = parse_config(raw, vmid)
    for warning in backup.warnings:
        log(warning)
    backup.snapshots.clear()
    backup.pending = Section(vmid)
    return backup, firewall


# --- the new config and its layout ------------------------------------------------------------


@dataclass
class Plan:
    """The new config before allocation, and what is done with the backup's parts."""

    conf: Config
    backup: Config | None
    firewall: bytes | None = None
    delayed: dict[str, str] = field(default_factory=dict)  # bind/device mps, added at the end
    was_template: bool = False


def command_line_config(vmid: int, params: dict[str, str], unprivileged: bool | None) -> Config:
    """The validated command-line options (disk values still ``STORAGE:SIZE``)."""
    conf = Config(vmid)
    for key, (_value, text) in parse_values(params).items():
        conf.values[key] = text
    if unprivileged:
        conf.set("unprivileged", True)
    return conf


def plan_restore(
    conf: Config,
    backup: Config | None,
    req: RestoreRequest,
    log: Log,
    firewall: bytes | None = None,
) -> Plan:
    """Id mapping, raw lxc keys and mount points from the backup (pct.md §4.3.2-4)."""
    plan = Plan(conf, backup, firewall)
    if backup is not None:
        plan.was_template = backup.is_template
        if req.is_root:
            conf.lxc = list(backup.lxc)  # may hold lxc.idmap: the extraction must use it
        if req.unprivileged is None and "unprivileged" in backup.values:
            conf.set_raw("unprivileged", backup.values["unprivileged"])
    try:
        if "rootfs" in conf.values:
            _check_given_layout(conf, req)
        else:
            plan.delayed = _backup_layout(conf, backup, req, log)
        complete_given_nets(conf, req.params)
    except FormatError as err:
        raise ConfigError(str(err)) from None
    check_rootdir_storages(conf)
    check_subids(conf.vmid, config_idmap(conf))
    return plan


def _check_given_layout(conf: Config, req: RestoreRequest) -> None:
    if not req.is_root and any(mp.type != "volume" for mp in conf.mountpoints()):
        raise CtkitError("Only root can pass arbitrary filesystem paths.")


def size_in_gib(size: int) -> str:
    """Bytes as the ``STORAGE:<GiB>`` number create takes (exact for whole MiB)."""
    return f"{size / (1 << 30):.10f}".rstrip("0").rstrip(".") or "0"


def _backup_layout(
    conf: Config, backup: Config | None, req: RestoreRequest, log: Log
) -> dict[str, str]:
    """Simple mode: the backup's volumes on ``--storage``; bind/device mps delayed."""
    mps = backup.mountpoints() if backup is not None else []
    if not any(mp.key == "rootfs" for mp in mps):
        raise CtkitError(
            "rootfs configuration could not be recovered, please check and specify manually!"
        )
    assert backup is not None
    delayed: dict[str, str] = {}
    for mp in mps:
        if mp.type == "volume":
            if mp.size is None:
                raise CtkitError(f"unable to detect disk size - please specify {mp.key} (size)")
            volume = f"{req.storage}:{size_in_gib(mp.size)}"
            conf.set(mp.key, mp.replace(volume=volume, size=None))
            continue
        if mp.key == "rootfs":
            raise CtkitError(
                f"restoring rootfs to {mp.type} mount is only possible by specifying "
                "-rootfs manually!"
            )
        if not req.is_root:
            raise CtkitError(f"restoring '{mp.key}' to {mp.type} mount is only possible for root")
        if mp.options.get("backup"):
            for line in _unsupported_lines(mp):
                log(line)
        delayed[mp.key] = backup.values[mp.key]
    return delayed


def _unsupported_lines(mp: MountPoint) -> list[str]:
    return [
        "WARNING - unsupported configuration!",
        f"backup was enabled for {mp.type} mount point {mp.key} ('{mp.path}')",
        "mount point configuration will be restored after archive extraction!",
        "contained files will be restored to wrong directory!",
    ]


def merge_config(
    conf: Config, backup: Config, *, restricted: bool = False, unique: bool = False, log: Log
) -> None:
    """Copy every backed-up key the new config does not set (Proxmox's sanitize_and_merge).

    Excluded: digest, rootfs, mpN, unusedN, snapshots, parent, unprivileged, template, lock.
    ``restricted`` (not root): raw lxc keys are only listed. ``unique``: new MACs.
    """
    for key in sorted(backup.values):
        if key in EXCLUDED_KEYS or EXCLUDED_KEY_RE.fullmatch(key) or key in conf.values:
            continue
        if restricted and key == "features" and not conf.unprivileged and backup.unprivileged:
            log("changing from unprivileged to privileged, skipping features")
            continue
        text = backup.values[key]
        if unique and NET_KEY_RE.fullmatch(key):
            text = _with_new_mac(text)
        conf.set_raw(key, text)
    if restricted and backup.lxc:
        log("skipping custom lxc options, restore manually as root:")
        log("--------------------------------")
        for key, value in backup.lxc:
            log(f"{key}: {value}")
        log("--------------------------------")


def _with_new_mac(text: str) -> str:
    try:
        net = NET_SCHEMA.parse(text)
    except FormatError:
        return text
    net["hwaddr"] = random_mac()
    return NET_SCHEMA.render(net)


# --- inside the mounted root file system ------------------------------------------------------


def _remove_config_members() -> None:
    """(Runs chrooted.) Delete copies of pct.conf/pct.fw that the data tree brought along.

    A suspend-mode archive holds them twice (its data tree is vzdump's temporary directory),
    and a container may have had its own; Proxmox deletes them after a restore.
    """
    for path in (CONFIG_PATH, FIREWALL_PATH):
        with contextlib.suppress(OSError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)


def remove_config_members(rootdir: Path) -> None:
    """Delete ``/etc/vzdump/pct.{conf,fw}`` in a restored root (chrooted: links stay inside)."""
    run_in_root(rootdir, _remove_config_members)


Parts = tuple[bytes, ...]


def _mp_parts(mp: MountPoint) -> Parts | None:
    return () if mp.key == "rootfs" else split_name(os.fsencode(mp.path.lstrip("/")))


def premade_dirs(conf: Config) -> set[Parts]:
    """The container's directories that exist before extraction, as split member names.

    Mounting the new layout makes the root, every mount point and every directory on the way
    to one; tar's ``--skip-old-files`` then skips their archive entries. All of them belong
    to the container, except a bind or device mount point and what lies inside it (a host
    directory keeps its attributes); the root is the container's whatever it is mounted from.
    """
    mounts = {parts: mp for mp in conf.mountpoints() if (parts := _mp_parts(mp)) is not None}
    candidates = {parts[:depth] for parts in mounts for depth in range(len(parts) + 1)}
    found: set[Parts] = set()
    for dir_parts in candidates:
        inner = max((m for m in mounts if dir_parts[: len(m)] == m), key=len, default=None)
        if inner is not None and (inner == () or mounts[inner].type == "volume"):
            found.add(dir_parts)
    return found


class PremadeEntries:
    """``keep`` for the extraction: the first directory entry of each of ``wanted``."""

    def __init__(self, wanted: set[Parts]) -> None:
        self._wanted = set(wanted)

    def __call__(self, member: Member) -> bool:
        if not self._wanted or not member.is_dir():
            return False
        parts = split_name(member.name)
        if parts not in self._wanted:
            return False
        self._wanted.discard(parts)  # as for any directory: the first entry wins
        return True


def apply_premade_entries(rootdir: Path, kept: list[Member], conf: Config, log: Log) -> None:
    """Give the premade directories the mode, owner, times, ACLs and xattrs of their entries.

    Each directory is checked to be a real one, reached without a symlink; the entries are
    applied under the names we computed (:func:`~shared.archive.tarextract.directory_entry`).
    """
    entries: list[tuple[Parts, Member]] = []
    for member in kept:
        parts = split_name(member.name)
        assert parts is not None  # the guard refused anything else
        try:
            os.close(open_beneath(rootdir, os.fsdecode(b"/".join(parts))))
        except (OSError, StorageError) as err:
            shown = display_name(b"/" + b"/".join(parts))
            log(f"WARN: not restoring the attributes of '{shown}' - {err}")
            continue
        entries.append((parts, member))
    try:
        apply_directory_entries(rootdir, entries, config_idmap(conf) or None)
    except CommandError as err:
        log(f"WARN: unable to restore the attributes of the root or mount point directories: {err}")


def _template_fixup(conf: Config, rootdir: Path, log: Log) -> None:
    """OS detection (stores the detected ostype) and the distro's template fixups only."""
    setup = detect_guest(conf, rootdir, log)
    setup.template_fixup()


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
    with Progress("restoring", total) as bar:
        seen = 0

        def update(count: int) -> None:
            nonlocal seen
            bar.update(count - seen)
            seen = count

        yield update


def _extract(
    source: ArchiveSource, target: Path, conf: Config, req: RestoreRequest, log: Log
) -> list[Member]:
    """Extract into the mounted root; returns the entries of the premade directories."""
    if source.is_stdin:
        log("extracting archive from STDIN")
    else:
        log(f"restoring '{source.label}' now..")
        log(f"extracting archive '{source.path or source.label}'")
    with _progress(req.progress, source.size()) as progress:
        stream = source.open_extraction(req.bwlimit, progress)
        try:
            stats = extract(
                cast(IO[bytes], stream),
                target,
                compression=Compression.NONE,
                idmap=config_idmap(conf) or None,
                ignore_unpack_errors=req.ignore_unpack_errors,
                log=log,
                keep=PremadeEntries(premade_dirs(conf)),
            )
        finally:
            stream.close()
    return stats.kept


def _fill(plan: Plan, source: ArchiveSource, req: RestoreRequest, log: Log) -> None:
    """Extract, merge the configs, tidy the root file system."""
    conf = plan.conf
    with staged(conf) as tree:
        premade = _extract(source, tree.target, conf, req, log)
        log("merging backed-up and given configuration..")
        if plan.backup is None:
            for line in (BANNER, "Backup archive does not contain any configuration", BANNER):
                log(line)
        else:
            merge_config(conf, plan.backup, restricted=not req.is_root, unique=req.unique, log=log)
            remove_config_members(tree.target)
        _template_fixup(conf, tree.target, log)
        apply_premade_entries(tree.target, premade, conf, log)


# --- the whole operation ----------------------------------------------------------------------


def _check_target(req: RestoreRequest) -> bool:
    """Whether an existing container is replaced (pct.md §4.1.1)."""
    if not store.exists(req.vmid):
        return False
    if not req.force:
        raise AlreadyExistsError(exists_message(req.vmid))
    if lxcapi.is_running(req.vmid):
        raise StateError("can't overwrite running container")
    store.check_protection(store.load(req.vmid), f"unable to restore CT {req.vmid}")
    return True


def _write_firewall(vmid: int, data: bytes, log: Log) -> None:
    path = paths.firewall_conf(vmid)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    except OSError as err:
        log(f"WARN: unable to write firewall config '{path}' - {err.strerror or err}")


def restore(req: RestoreRequest, log: Log = _stderr) -> Config:
    """Restore ``req.archive`` as container ``req.vmid``; returns the written config."""
    params = dict(req.params)
    normalize_disk_params(params, req.storage, log)
    if req.archive == STDIN and "rootfs" not in params:
        raise CtkitError("restore from pipe requires rootfs parameter")
    conf = command_line_config(req.vmid, params, req.unprivileged)
    replacing = _check_target(req)
    source = open_source(req.archive, req.stdin)
    alloc = Allocation(req.vmid)
    with signals.held():  # a lock is taken completely, so that the cleanup below finds it
        try:
            if replacing:
                lock_existing(req.vmid)
            else:
                create_locked_config(Config(req.vmid))  # a placeholder that reserves the id
        except CtkitError as err:
            raise prefixed(err, f"unable to restore CT {req.vmid} - ") from err
    try:
        signals.raise_if_interrupted()
        backup, firewall = recover_config(source, req.vmid, log)
        if backup is not None:
            if not req.trust_archive:
                drop_untrusted(backup, log)
            drop_invalid(backup, log)
        plan = plan_restore(conf, backup, req, log, firewall)
        with signals.held():  # each new volume is on record before a signal acts
            allocate(conf, alloc, req.storage)
            conf.set("lock", CREATE_LOCK)
            if not replacing:
                store.save(conf)  # the new volumes are on record while they are filled
        signals.raise_if_interrupted()
        _fill(plan, source, req, log)
        _finish(plan, alloc, log)
        check_merged(conf)
        signals.raise_if_interrupted()  # one noted while the volumes were unmounted
        with signals.held():  # from here on the restore is completed, whatever arrives
            replaced = commit_config(conf)
    except BaseException as err:
        with signals.held():  # a signal now must not leave volumes or a lock behind
            alloc.free_all(log)
            if replacing:
                release_create_lock(req.vmid, log)
            else:
                remove_locked_config(req.vmid, log)
                remove_staging_dirs(req.vmid)
        if isinstance(err, CtkitError):
            raise prefixed(err, f"unable to restore CT {req.vmid} - ") from err
        raise
    with signals.held():
        if plan.firewall is not None:
            _write_firewall(req.vmid, plan.firewall, log)
        if replacing:
            free_replaced_volumes(replaced, conf, log)
    if signals.interrupted():
        raise KeyboardInterrupt  # restored, but --start and the caller's next steps are not
    if req.start:
        lifecycle.start(req.vmid, log=log)
    return conf


def _finish(plan: Plan, alloc: Allocation, log: Log) -> None:
    """Defaults, the delayed bind/device mount points, and the template conversion."""
    conf = plan.conf
    apply_defaults(conf)
    for key, text in plan.delayed.items():
        conf.set_raw(key, text)
    if plan.was_template:
        log("Convert restored container to template...")
        convert_to_template(conf, alloc)
