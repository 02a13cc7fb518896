"""A restic snapshot of a container as a vzdump tar stream (uncompressed), for restore and
export.

``restic dump <snapshot> /`` gives the snapshot's tree as tar: ``config/pct.conf``,
``config/pct.fw``, then ``rootfs/...`` (restic writes a directory's entries sorted by name,
so the config comes first). Each member is re-written as the tar path lays an archive out:
``./etc/vzdump/pct.conf`` and ``./etc/vzdump/pct.fw`` first (owned by the container's root),
then ``./`` and the root file system. Anything else in the tree is refused: a repository is
input like any archive, and the stream then passes the same hostile-archive guard on
extraction.

Special files: restic 0.14's dump leaves fifos out and writes device nodes as empty regular
files; a ``restic ls`` of the snapshot names them first, so fifos are added at the end of the
stream and device nodes are left out rather than restored as empty files.

Owners: an unprivileged container's snapshot holds host ids (see vzdump/engine/resticpath.py)
and its ``idmap=`` tag; ids are shifted back into the container's space here (ids outside
the map become 65534, as the tar path's id-mapped tar sees them). POSIX ACLs come as GNU tar's
``SCHILY.acl.*`` text records (restic's dump writes them; a raw ``system.posix_acl_*``
attribute is converted to them), their ids shifted too, so ``tar --acls`` restores them.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tarfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from shared import restic
from shared.archive.idmap import IdMapEntry, parse_idmap
from shared.archive.pipeline import grow_pipe
from shared.errors import ArchiveError, CtkitError, StorageError
from shared.storage import resticbackups
from shared.storage.resticplugin import ResticStorage

NOBODY = 65534
BLOCK_HEADER = 2048  # a pax header block and the member's own header
COPY_BUFFER = 1 << 20
CONFIG_NAMES = {"config/pct.conf": "./etc/vzdump/pct.conf", "config/pct.fw": "./etc/vzdump/pct.fw"}
ACL_XATTRS = {
    "SCHILY.xattr.system.posix_acl_access": "SCHILY.acl.access",
    "SCHILY.xattr.system.posix_acl_default": "SCHILY.acl.default",
}
SPECIAL_TYPES = ("fifo", "socket", "dev", "chardev")
MAX_SPECIALS = 1 << 20
ACL_TEXT_KEYS = ("SCHILY.acl.access", "SCHILY.acl.default")
ACL_TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}


def parse_idmap_tag(value: str | None) -> list[IdMapEntry]:
    if not value:
        return []
    out = []
    for item in value.split("/"):
        out.append(parse_idmap(item.replace(":", " ")))
    return out


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


def acl_text(raw: str, shift: IdShift) -> str | None:
    """The binary POSIX ACL attribute as GNU tar's text form with numeric ids, or None."""
    data = raw.encode("utf-8", "surrogateescape")
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
    return ",".join(entries)


def shift_acl_text(text: str, shift: IdShift) -> str:
    """``user:1234:r--`` entries (newline or comma separated) with their ids shifted."""
    out = []
    for entry in text.replace(",", "\n").split("\n"):
        parts = entry.split(":")
        if len(parts) >= 3 and parts[0] in ("user", "u", "group", "g") and parts[1].isdigit():
            parts[1] = str(shift("u" if parts[0][0] == "u" else "g", int(parts[1])))
        out.append(":".join(parts))
    return "\n".join(out)


def rename(name: str) -> str | None:
    """The archive name of a snapshot member; None: not part of the archive."""
    name = name.rstrip("/")
    if name == "config":
        return None
    if name in CONFIG_NAMES:
        return CONFIG_NAMES[name]
    if name == "rootfs":
        return "."
    if name.startswith("rootfs/"):
        return "./" + name[len("rootfs/") :]
    raise ArchiveError(f"unexpected member '{name[:200]}' in the restic snapshot")


def special_nodes(store: ResticStorage, snap_id: str) -> dict[str, dict[str, Any]]:
    """Snapshot path (``rootfs/...``) → ``restic ls`` node of every fifo, socket and device
    node: restic 0.14's dump leaves fifos out and writes device nodes as empty regular files."""
    out: dict[str, dict[str, Any]] = {}
    proc = restic.start(store.repo, ["ls", "--json", snap_id])
    try:
        for item in proc.json_lines():
            path = item.get("path")
            wanted = item.get("type") in SPECIAL_TYPES and len(out) < MAX_SPECIALS
            if wanted and isinstance(path, str):
                out[path.lstrip("/")] = item
        proc.finish()
    finally:
        proc.kill()
    return out


def fifo_member(path: str, node: dict[str, Any], shift: IdShift) -> tarfile.TarInfo | None:
    """The tar member of a fifo the dump left out (from its ``restic ls`` node)."""
    name = rename(path)
    if name is None or name == ".":
        return None
    member = tarfile.TarInfo(name)
    member.type = tarfile.FIFOTYPE
    member.mode = int(node.get("mode") or 0o644) & 0o777
    member.uid = shift("u", int(node.get("uid") or 0))
    member.gid = shift("g", int(node.get("gid") or 0))
    with contextlib.suppress(StorageError, ValueError):
        member.mtime = resticbackups.parse_restic_time(str(node.get("mtime", "")))
    return member


def rewrite(
    member: tarfile.TarInfo, shift: IdShift, specials: dict[str, dict[str, Any]] | None = None
) -> tarfile.TarInfo | None:
    if specials and member.name.rstrip("/") in specials:
        return None  # a device node as an empty file: its numbers are not in restic's dump
    new = rename(member.name)
    if new is None:
        return None
    is_config = new.startswith("./etc/vzdump/") and member.name.startswith("config/")
    member.name = new
    if member.islnk():
        target = rename(member.linkname)
        if target is None:
            raise ArchiveError("hard link to a config member in the restic snapshot")
        member.linkname = target
    if is_config:
        member.uid = member.gid = 0
        member.mode = 0o644
    else:
        member.uid, member.gid = shift("u", member.uid), shift("g", member.gid)
    member.uname = member.gname = ""
    pax = dict(member.pax_headers)
    for key, acl_key in ACL_XATTRS.items():
        raw = pax.pop(key, None)
        text = acl_text(raw, shift) if raw is not None else None
        if text is not None:
            pax[acl_key] = text
    for key in ACL_TEXT_KEYS:
        if key in pax:
            pax[key] = shift_acl_text(pax[key], shift)
    # tarfile writes a pax record it finds here in preference to the fields set above
    for key in ("path", "linkpath", "uid", "gid", "uname", "gname", "size"):
        pax.pop(key, None)
    member.pax_headers = pax
    return member


def copy_members(
    raw: IO[bytes],
    out: IO[bytes],
    shift: IdShift,
    specials: dict[str, dict[str, Any]] | None = None,
) -> int:
    """restic's tar on ``raw`` re-written onto ``out``; the end-of-archive blocks are written
    only when every member got through (an error leaves a stream that fails to extract)."""
    count = 0
    with (
        tarfile.open(fileobj=raw, mode="r|", bufsize=COPY_BUFFER) as source,
        tarfile.open(
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_BUFFER
        ) as sink,
    ):
        sink.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]  # not in the stubs
        for member in source:
            data = source.extractfile(member) if member.isreg() else None
            new = rewrite(member, shift, specials)
            if new is not None:
                sink.addfile(new, data)
                count += 1
        # the fifos last: their directories exist by then
        for path, node in sorted((specials or {}).items()):
            fifo = fifo_member(path, node, shift) if node.get("type") == "fifo" else None
            if fifo is not None:
                sink.addfile(fifo)
                count += 1
    return count


class SnapshotStream:
    """Readable vzdump tar stream of one snapshot; restic's failure surfaces from read().

    No ``fileno()`` on purpose: readers must go through :meth:`read` so that a failure of
    restic (or of the rewrite) is an error at the end of the stream, never a clean EOF.
    """

    def __init__(self, store: ResticStorage, snap: resticbackups.Snapshot) -> None:
        self.shift = IdShift(parse_idmap_tag(restic.tag_value(snap.tags, "idmap")))
        self.specials = special_nodes(store, snap.id)
        rfd, wfd = os.pipe()
        grow_pipe(wfd)
        self._reader: IO[bytes] = os.fdopen(rfd, "rb", buffering=0)
        self._proc = restic.start(store.repo, ["dump", snap.id, "/"])
        grow_pipe(self._proc.stdout.fileno())
        self.error: BaseException | None = None
        self.members = 0
        self._closed = False
        self._thread = threading.Thread(target=self._produce, args=(wfd,), daemon=True)
        self._thread.start()

    def _produce(self, wfd: int) -> None:
        try:
            with os.fdopen(wfd, "wb") as out:
                self.members = copy_members(self._proc.stdout, out, self.shift, self.specials)
            self._proc.finish()
        except BrokenPipeError:
            self._proc.kill()  # the reader went away (closed or failed)
        except (CtkitError, tarfile.TarError, OSError, ValueError) as err:
            self._proc.kill()
            self.error = err

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size if size >= 0 else COPY_BUFFER)
        if not data:
            self._thread.join()
            if self.error is not None:
                if isinstance(self.error, CtkitError):
                    raise self.error
                raise ArchiveError(f"restic snapshot unreadable: {self.error}")
        return data or b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._reader.close()
        self._thread.join(timeout=30)
        self._proc.kill()


def open_snapshot(store: ResticStorage, volname: str) -> SnapshotStream:
    return SnapshotStream(store, resticbackups.find(store, volname))


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
