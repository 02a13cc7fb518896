"""A restic snapshot of a container as a vzdump tar stream (uncompressed), for restore and
export.

``restic dump <snapshot> /`` gives the snapshot's tree as tar: ``config/pct.conf``,
``config/pct.fw``, then ``rootfs/...`` (restic writes a directory's entries sorted by name,
so the config comes first). Each member is re-written as the tar path lays an archive out:
``./etc/vzdump/pct.conf`` and ``./etc/vzdump/pct.fw`` first (owned by the container's root),
then ``./`` and the root file system. Anything else in the tree is refused: a repository is
input like any archive, and the stream then passes the same hostile-archive guard on
extraction.

Only the headers are re-written: the streaming header scanner (``shared.archive.tarscan``)
walks restic's tar, each member gets new header blocks (``shared.archive.tarwrite``) and its
data passes through untouched, in the reading thread, with no further copy or pipe. That keeps
a restore as fast as restic's own ``restore`` of the snapshot.

Special files: restic 0.14's dump leaves fifos out and writes device nodes as empty regular
files; a ``restic ls`` of the snapshot names them. It runs beside the dump (both pay restic's
start-up at the same time); the stream waits for it only at the first empty file, and adds
the fifos at the end of the stream. Device nodes are left out rather than restored as empty
files.

Owners: an unprivileged container's snapshot holds host ids (see vzdump/engine/resticpath.py)
and its ``idmap=`` tag; ids are shifted back into the container's space here (ids outside
the map become 65534, as the tar path's id-mapped tar sees them). POSIX ACLs come as GNU tar's
``SCHILY.acl.*`` text records (restic's dump writes them; a raw ``system.posix_acl_*``
attribute is converted to them), their ids shifted too, so ``tar --acls`` restores them; so is
the root id of a file capability (:func:`shift_capability`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from shared import restic, resticgate
from shared.archive.idmap import IdMapEntry, parse_idmap
from shared.archive.pipeline import grow_pipe
from shared.archive.tarformat import BLOCK, DIR, FIFO, LNK, RECORD, SYM, Member, padded
from shared.archive.tarscan import ScanSink, TarScanner
from shared.archive.tarwrite import member_header, octal
from shared.errors import ArchiveError, CtkitError, StorageError
from shared.printable import printable
from shared.storage import resticbackups
from shared.storage.resticplugin import ResticStorage

NOBODY = 65534
BLOCK_HEADER = 2048  # a pax header block and the member's own header
COPY_BUFFER = 1 << 20
CONFIG_NAMES = {
    b"config/pct.conf": b"./etc/vzdump/pct.conf",
    b"config/pct.fw": b"./etc/vzdump/pct.fw",
}
ACL_XATTRS = {
    b"SCHILY.xattr.system.posix_acl_access": b"SCHILY.acl.access",
    b"SCHILY.xattr.system.posix_acl_default": b"SCHILY.acl.default",
}
ACL_TEXT_KEYS = (b"SCHILY.acl.access", b"SCHILY.acl.default")
# pax records the new header writes itself (or that would override its fields)
DROPPED_PAX = frozenset({b"path", b"linkpath", b"uid", b"gid", b"uname", b"gname", b"size"})
SPECIAL_TYPES = ("fifo", "socket", "dev", "chardev")
DEVICE_TYPES = ("dev", "chardev")
DEV_DIR = b"rootfs/dev/"
SPECIAL_LINE = re.compile(rb'"type":"(?:fifo|socket|dev|chardev)"')
# A repository is input like any archive: what is kept of its listing and held back from its
# dump is bounded in count and in bytes (a container has a few fifos and device nodes).
MAX_SPECIALS = 100_000
MAX_SPECIAL_BYTES = 32 << 20  # of their paths
MAX_DEFERRED = 1 << 16  # empty files held back while restic ls runs (then it is waited for)
MAX_DEFERRED_BYTES = 16 << 20  # of their headers (extended attributes make them large)
ACL_TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}
CONFIG_MODE = octal(0o644, 8)
# <linux/capability.h>: struct vfs_ns_cap_data (version 3) carries the root id at its end
CAPABILITY_XATTR = b"SCHILY.xattr.security.capability"
VFS_CAP_REVISION_MASK = 0xFF000000
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_REVISION_3 = 0x03000000
VFS_CAP_V3_SIZE = 24


def parse_idmap_tag(value: str | None) -> list[IdMapEntry]:
    """The ``idmap=`` tag of a snapshot (``u:0:100000:65536/g:...``); a bad one is the
    snapshot's fault and is named as its tag."""
    if not value:
        return []
    try:
        return [parse_idmap(item.replace(":", " ")) for item in value.split("/")]
    except CtkitError:
        raise ArchiveError(
            f"restic snapshot has an invalid idmap tag '{printable(value[:200])}'"
        ) from None


class IdShift:
    """Host ids → container ids under a map (no map: ids unchanged)."""

    def __init__(self, entries: Sequence[IdMapEntry]) -> None:
        self.entries = list(entries)

    def __call__(self, kind: str, host_id: int) -> int:
        if not self.entries:
            return host_id
        for e_kind, ct, host, length in self.entries:
            if e_kind == kind and host <= host_id < host + length:
                return ct + host_id - host
        return NOBODY


def acl_text(data: bytes, shift: IdShift) -> bytes | None:
    """The binary POSIX ACL attribute as GNU tar's text form with numeric ids, or None."""
    if len(data) < 4 or (len(data) - 4) % 8 or struct.unpack_from("<I", data)[0] != 2:
        return None
    entries = []
    for offset in range(4, len(data), 8):
        tag, perm, ident = struct.unpack_from("<HHI", data, offset)
        name = ACL_TAGS.get(tag)
        if name is None:
            return None
        who = ""
        if tag in (0x02, 0x08):
            who = str(shift("u" if tag == 0x02 else "g", ident))
        bits = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        entries.append(f"{name}:{who}:{bits}")
    return ",".join(entries).encode()


def shift_acl_text(text: bytes, shift: IdShift) -> bytes:
    """``user:1234:r--`` entries (newline or comma separated) with their ids shifted."""
    out = []
    for entry in text.replace(b",", b"\n").split(b"\n"):
        parts = entry.split(b":")
        if len(parts) >= 3 and parts[0] in (b"user", b"u", b"group", b"g") and parts[1].isdigit():
            kind = "u" if parts[0][:1] == b"u" else "g"
            parts[1] = b"%d" % shift(kind, int(parts[1]))
        out.append(b":".join(parts))
    return b"\n".join(out)


def rename(name: bytes) -> bytes | None:
    """The archive name of a snapshot member (no trailing slash); None: not in the archive."""
    name = name.rstrip(b"/")
    if name == b"config":
        return None
    if name in CONFIG_NAMES:
        return CONFIG_NAMES[name]
    if name == b"rootfs":
        return b"."
    if name.startswith(b"rootfs/"):
        return b"./" + name[len(b"rootfs/") :]
    shown = name[:200].decode("utf-8", "replace")
    raise ArchiveError(f"unexpected member '{shown}' in the restic snapshot")


def attribute_records(pax: dict[bytes, bytes], shift: IdShift) -> list[tuple[bytes, bytes]]:
    """The member's pax records that carry over: times, xattrs, ACLs (as text, ids shifted),
    file capabilities (their root id shifted)."""
    out: list[tuple[bytes, bytes]] = []
    for key, value in pax.items():
        if key in DROPPED_PAX:
            continue
        if key in ACL_XATTRS:
            text = acl_text(value, shift)
            if text is not None:
                out.append((ACL_XATTRS[key], text))
            continue
        if key in ACL_TEXT_KEYS:
            value = shift_acl_text(value, shift)
        elif key == CAPABILITY_XATTR:
            value = shift_capability(value, shift)
        out.append((key, value))
    return out


def shift_capability(data: bytes, shift: IdShift) -> bytes:
    """A file capability read on the host from an unprivileged container's tree is a version 3
    one naming its root by host id (100000): tar, which restores it inside the container's user
    namespace, can write no such id, and the capability was lost without a word (tar is told
    not to warn about attributes). One for the container's root becomes version 2, as the tar
    path reads it from inside; one for another id gets that id shifted."""
    if not shift.entries or len(data) != VFS_CAP_V3_SIZE:
        return data
    magic, rootid = struct.unpack_from("<I", data)[0], struct.unpack_from("<I", data, 20)[0]
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3:
        return data
    ct_root = shift("u", rootid)
    if ct_root == 0:
        v2 = (magic & ~VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_2
        return struct.pack("<I", v2) + data[4:20]
    return data[:20] + struct.pack("<I", ct_root)


def snapshot_line(raw: bytes) -> str | None:
    """The snapshot id of ``restic ls --json``'s first line (None: not such a line)."""
    try:
        head = json.loads(raw) if len(raw) <= restic.MAX_JSON_LINE else None
    except ValueError:
        return None
    if isinstance(head, dict) and head.get("struct_type") == "snapshot":
        return str(head.get("id") or "") or None
    return None


class Special(NamedTuple):
    """What is kept of a fifo, socket or device node that ``restic ls`` lists: a fifo's
    attributes (the dump leaves fifos out), and only that the others are there."""

    fifo: bool
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: int = 0


NOT_A_FIFO = Special(fifo=False)


def special(item: dict[str, Any]) -> Special:
    """The :class:`Special` of a ``restic ls`` node (a bad field counts as 0)."""
    if item.get("type") != "fifo":
        return NOT_A_FIFO
    fields = []
    for key, default in (("mode", 0o644), ("uid", 0), ("gid", 0)):
        value = item.get(key)
        fields.append(value if isinstance(value, int) and value >= 0 else default)
    mtime = 0
    with contextlib.suppress(StorageError, ValueError):
        mtime = max(0, resticbackups.parse_restic_time(str(item.get("mtime", ""))))
    return Special(True, fields[0] & 0o777, fields[1], fields[2], mtime)


class SpecialNodes:
    """Snapshot path (``rootfs/...``) → every fifo, socket and device node ``restic ls``
    lists, collected by a thread while the dump runs."""

    def __init__(self, store: ResticStorage, ref: Sequence[str]) -> None:
        self.nodes: dict[bytes, Special] = {}
        # device nodes outside /dev (a restore skips /dev): restic's dump has them without
        # their numbers, so a restore leaves them out, and says so
        self.devices = 0
        self.first_device: bytes | None = None
        self._bytes = 0  # of the paths kept
        self.error: BaseException | None = None
        self._snapshot: str | None = None  # the id restic names in its first line
        self._seen = threading.Event()
        self._proc = restic.start(store.repo, ["ls", "--json", *ref])
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def snapshot_id(self) -> str | None:
        """The id of the snapshot restic lists (its first line), once it is there."""
        self._seen.wait()
        if self._snapshot is None:
            self.get()  # restic's failure
        return self._snapshot

    def _collect(self) -> None:
        try:
            for raw in self._proc.stdout:
                if not self._seen.is_set():
                    self._snapshot = snapshot_line(raw)
                    self._seen.set()
                    if self._snapshot is not None:
                        continue
                # most lines are files and directories: not worth decoding
                if len(raw) > restic.MAX_JSON_LINE or not SPECIAL_LINE.search(raw):
                    continue
                item = json.loads(raw)
                path = item.get("path") if isinstance(item, dict) else None
                if item.get("type") in SPECIAL_TYPES and isinstance(path, str):
                    name = os.fsencode(path.lstrip("/"))
                    self._keep(name, special(item))
                    if item.get("type") in DEVICE_TYPES and not name.startswith(DEV_DIR):
                        self.devices += 1
                        self.first_device = self.first_device or name
            self._proc.finish()
        except (CtkitError, OSError, ValueError) as err:
            self.error = err
        finally:
            self._seen.set()

    def _keep(self, path: bytes, node: Special) -> None:
        self._bytes += len(path)
        if len(self.nodes) >= MAX_SPECIALS or self._bytes > MAX_SPECIAL_BYTES:
            raise ArchiveError(
                f"the restic snapshot holds more fifos, sockets and device nodes than a restore "
                f"takes ({MAX_SPECIALS}, or {MAX_SPECIAL_BYTES >> 20} MiB of their paths)"
            )
        self.nodes[path] = node

    def ready(self) -> bool:
        """Whether ``restic ls`` has finished (then :meth:`get` does not wait)."""
        return not self._thread.is_alive()

    def get(self) -> dict[bytes, Special]:
        """The nodes, once ``restic ls`` has finished (its failure is raised)."""
        self._thread.join()
        if self.error is not None:
            if isinstance(self.error, CtkitError):
                raise self.error
            raise ArchiveError(f"restic snapshot unreadable: {self.error}")
        return self.nodes

    def close(self) -> None:
        self._proc.kill()
        self._thread.join(timeout=30)


def fifo_header(path: bytes, node: Special, shift: IdShift) -> bytes | None:
    """The tar member of a fifo the dump left out (from its ``restic ls`` node)."""
    name = rename(path)
    if name is None or name == b".":
        return None
    return member_header(
        name=name,
        typeflag=FIFO,
        mode_field=octal(node.mode, 8),
        uid=shift("u", node.uid),
        gid=shift("g", node.gid),
        size=0,
        mtime_field=octal(node.mtime, 12),
    )


class Rewriter(ScanSink):
    """The scanner's sink: each member of restic's tar as the vzdump layout has it (new
    header blocks, the data as it came), queued on ``out``."""

    def __init__(self, shift: IdShift, specials: SpecialNodes | None) -> None:
        self.shift = shift
        self.specials = specials
        self.out: list[bytes | memoryview] = []
        self.members = 0
        self.written = 0  # bytes queued on ``out`` so far
        self._padding = 0
        self._deferred: list[tuple[bytes, bytes]] = []  # (snapshot path, header blocks)
        self._deferred_bytes = 0
        self._fifos: Iterator[tuple[bytes, Special]] | None = None  # once the dump has ended

    def _put(self, data: bytes | memoryview) -> None:
        self.out.append(data)
        self.written += len(data)

    def _may_be_special(self, member: Member) -> bool:
        # device nodes come as empty files; a dump that wrote them otherwise is covered too
        return not (
            self.specials is None
            or member.size
            or member.type in (DIR, SYM, LNK)
            or member.name.startswith(b"config/")
        )

    def _flush_deferred(self, wait: bool) -> None:
        """Queue the held-back empty members that ``restic ls`` does not name."""
        if not self._deferred or self.specials is None:
            return
        if not wait and not self.specials.ready():
            return
        nodes = self.specials.get()
        for key, header in self._deferred:
            if key not in nodes:  # else a device node as an empty file: left out
                self._put(header)
                self.members += 1
        self._deferred.clear()
        self._deferred_bytes = 0

    def member(self, member: Member) -> bool:
        if member.sparse:
            raise ArchiveError(f"unexpected sparse member '{member.display}' in the snapshot")
        name = rename(member.name)
        if name is None:
            return False
        # a hard link may name a held-back member: those go first
        full = len(self._deferred) >= MAX_DEFERRED or self._deferred_bytes >= MAX_DEFERRED_BYTES
        self._flush_deferred(wait=member.type == LNK or full)
        is_config = member.name.rstrip(b"/") in CONFIG_NAMES
        linkname = member.linkname
        if member.type == LNK:
            target = rename(linkname) if linkname.startswith(b"rootfs/") else None
            if target is None:
                raise ArchiveError("hard link out of the root file system in the restic snapshot")
            linkname = target
        if member.is_dir():
            name += b"/"
        header = member.header
        if is_config:
            uid = gid = 0
            mode = CONFIG_MODE
        else:
            uid, gid = self.shift("u", member.uid), self.shift("g", member.gid)
            mode = header[100:108]
        blocks = member_header(
            name=name,
            typeflag=member.type,
            mode_field=mode,
            uid=uid,
            gid=gid,
            size=member.size,
            mtime_field=header[136:148],
            linkname=linkname,
            device_fields=header[329:345],
            pax=attribute_records(member.pax, self.shift),
        )
        if self._may_be_special(member):
            # which empty files are device nodes is known when restic ls is done; until then
            # they are held back (no data, so the stream goes on without them)
            self._deferred.append((member.name.rstrip(b"/"), blocks))
            self._deferred_bytes += len(blocks)
            self._flush_deferred(wait=False)
            return False
        self._put(blocks)
        self._padding = padded(member.size) - member.size
        self.members += 1
        return True

    def data(self, piece: memoryview) -> None:
        self._put(piece)

    def member_end(self, member: Member) -> None:
        if self._padding:
            self._put(bytes(self._padding))

    def finish(self) -> None:
        """The dump has ended: the held-back empty files; :meth:`tail` then queues the rest."""
        self._flush_deferred(wait=True)
        nodes = self.specials.get() if self.specials else {}
        self._fifos = iter(sorted((p, n) for p, n in nodes.items() if n.fifo))

    def tail(self, budget: int) -> bool:
        """Queue about ``budget`` bytes more of what follows the dump: the fifos (their
        directories exist by then), then the end of the archive. False once all is queued."""
        if self._fifos is None:
            return False
        start = self.written
        for path, node in self._fifos:
            header = fifo_header(path, node, self.shift)
            if header is not None:
                self._put(header)
                self.members += 1
            if self.written - start >= budget:
                return True
        end = 2 * BLOCK
        self._put(bytes(end + (-(self.written + end) % RECORD)))
        self._fifos = None
        return True


class SnapshotStream:
    """Readable vzdump tar stream of one snapshot; restic's failure surfaces from read().

    No ``fileno()`` on purpose: readers must go through :meth:`read` so that a failure of
    restic (or of the rewrite) is an error at the end of the stream, never a clean EOF: the
    end-of-archive blocks are added only when restic's dump and ls both succeeded.
    """

    def __init__(self, snap: resticbackups.Snapshot, started: Started) -> None:
        self.snapshot = snap
        self.shift = IdShift(parse_idmap_tag(restic.tag_value(snap.tags, "idmap")))
        self._started = started
        self._specials, self._proc = started.specials, started.dump
        self._fd = self._proc.stdout.fileno()
        grow_pipe(self._fd)  # fewer, larger reads: restic and this thread switch less
        self._rewriter = Rewriter(self.shift, self._specials)
        self._scanner = TarScanner(self._rewriter, forward=False, deliver_data=True)
        self._ready = memoryview(b"")  # output not yet handed out
        self._eof = False
        self._closed = False

    @property
    def members(self) -> int:
        return self._rewriter.members

    def left_out(self) -> tuple[int, str | None]:
        """How many device nodes (outside /dev) a restore of the snapshot leaves out, and the
        first one's path in the container: restic's dump gives none with its numbers."""
        if self._specials is None:
            return 0, None
        first = self._specials.first_device
        path = os.fsdecode((rename(first) or b"./")[1:]) if first else None
        return self._specials.devices, path

    def _fill(self) -> None:
        """Read restic's output until there is something to hand out, or the end."""
        out = self._rewriter.out
        while not out:
            if self._eof:
                if not self._rewriter.tail(COPY_BUFFER):
                    return  # all handed out
                continue
            try:
                chunk = os.read(self._fd, COPY_BUFFER)
            except OSError as err:
                raise ArchiveError(f"restic snapshot unreadable: {err}") from None
            if chunk:
                self._scanner.feed(chunk)
                continue
            self._eof = True
            self._proc.finish()
            self._scanner.finish()
            self._rewriter.finish()
        self._ready = memoryview(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def read(self, size: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed restic snapshot stream")
        if not self._ready:
            self._fill()
        ready = self._ready
        if size < 0 or size >= len(ready):
            self._ready = memoryview(b"")
            whole = ready.obj
            if isinstance(whole, bytes) and len(whole) == len(ready):
                return whole  # no copy
            return ready.tobytes()
        self._ready = ready[size:]
        return ready[:size].tobytes()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._started.close()


class Started:
    """``restic dump`` and ``restic ls`` of one snapshot reference (its id, or ``--tag ...
    latest``), started together."""

    def __init__(self, store: ResticStorage, ref: Sequence[str]) -> None:
        # this host's forget and prune of the repository wait for the stream to end (their
        # exclusive lock would make these fail): the repository's gate, held shared
        self._gate = contextlib.ExitStack()
        self._gate.enter_context(resticgate.gate(store.id, store.repo.repository, exclusive=False))
        try:
            self.specials = SpecialNodes(store, ref)
            try:
                self.dump = restic.start(store.repo, ["dump", *ref, "/"])
            except BaseException:
                self.specials.close()
                raise
        except BaseException:
            self._gate.close()
            raise

    def close(self) -> None:
        self.dump.kill()
        self.specials.close()
        self._gate.close()


def open_snapshot(store: ResticStorage, volname: str) -> SnapshotStream:
    """The backup ``volname`` as a vzdump tar stream. Its dump starts by the snapshot's tags
    while the snapshot is looked up, so that the two restic start-ups (each opens the
    repository: half a second of key derivation) overlap instead of adding up; the lookup
    then confirms that the snapshot being dumped is the one, and only one, that the volume
    name names."""
    started = Started(store, ["--tag", resticbackups.selector(volname), "latest"])
    try:
        snap = resticbackups.find(store, volname)
        try:
            listed = started.specials.snapshot_id()
        except restic.NodeKeyRefused:  # the lookup went on with the password: so does this
            listed = None
        # written before the time tag, or a newer snapshot of someone else carries the same
        # tags (the repository is shared): dumped by its id after all. A stale copy of it (a
        # killed re-tag) holds the same data.
        if not snap.time_tagged or listed not in snap.ids:
            started.close()
            started = Started(store, [snap.id])
        return SnapshotStream(snap, started)  # refuses a snapshot whose tags it cannot use
    except BaseException:
        started.close()
        raise


def read_through(store: ResticStorage, volname: str) -> tuple[int, int, float]:
    """Read a backup as restore would, to the end: (members, tar bytes, seconds). restic checks
    every blob it decrypts, and the stream must start with the config and end cleanly."""
    started = time.monotonic()
    stream = open_snapshot(store, volname)
    total = 0
    try:
        first = b""
        while len(first) < BLOCK_HEADER and (data := stream.read(COPY_BUFFER)):
            first += data
        if b"./etc/vzdump/pct.conf" not in first[:BLOCK_HEADER]:
            raise ArchiveError("the backup does not start with its configuration")
        total = len(first)
        while data := stream.read(COPY_BUFFER):
            total += len(data)
    finally:
        stream.close()
    return stream.members, total, time.monotonic() - started
