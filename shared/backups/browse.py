"""Browse a backup: its members as (path, type, size, owner, mtime), streamed, never unpacked.

Owners are the ids stored in the archive, which for an unprivileged container are already the
container's own ids (vzdump archives through the container's id map). Paths are shown rooted at
the container's ``/``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.archive.members import iter_members
from shared.archive.tarformat import (
    AREG,
    BLK,
    CHR,
    CONT,
    DIR,
    FIFO,
    GNU_SPARSE,
    LNK,
    REG,
    SYM,
    Member,
    display_name,
    parse_number,
    parse_pax_number,
)
from shared.archive.targuard import split_name
from shared.errors import ArchiveError

from .locate import Backup

TYPE_NAMES = {
    REG: "file",
    AREG: "file",
    CONT: "file",
    GNU_SPARSE: "file",
    DIR: "dir",
    SYM: "symlink",
    LNK: "hardlink",
    CHR: "chardev",
    BLK: "blockdev",
    FIFO: "fifo",
}


@dataclass(frozen=True)
class Entry:
    path: str
    type: str
    size: int
    uid: int
    gid: int
    mode: int
    mtime: int
    target: str | None  # symlink / hard link target

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "uid": self.uid,
            "gid": self.gid,
            "mode": f"{self.mode:04o}",
            "mtime": self.mtime,
        }
        if self.target is not None:
            out["target"] = self.target
        return out


def member_parts(name: bytes) -> tuple[bytes, ...]:
    parts = split_name(name)
    if parts is None:
        raise ArchiveError(f"unsafe archive member '{display_name(name)}'")
    return parts


def path_parts(path: str) -> tuple[bytes, ...]:
    """A path given by the user (``/etc/hosts``, ``etc/hosts``) as archive name components."""
    parts = split_name(os.fsencode(path.lstrip("/")))
    if parts is None:
        raise ArchiveError(f"invalid path '{path}' (no '..' allowed)")
    return parts


def real_size(member: Member) -> int:
    """A sparse file's apparent size (what ``ls -l`` shows), else the stored size."""
    for key in (b"GNU.sparse.realsize", b"GNU.sparse.size"):
        if key in member.pax:
            with contextlib.suppress(ArchiveError):
                return parse_pax_number(member.pax[key], key, member.offset)
    if member.type == GNU_SPARSE:
        return parse_number(member.header[483:495], "realsize", member.offset)
    return member.size


def under(parts: tuple[bytes, ...], prefix: tuple[bytes, ...]) -> bool:
    return parts[: len(prefix)] == prefix


def to_entry(member: Member) -> Entry:
    parts = member_parts(member.name)
    kind = TYPE_NAMES.get(member.type, "file")
    if kind == "file" and member.is_dir():
        kind = "dir"
    target = None
    if member.type in (SYM, LNK):
        target = display_name(member.linkname)
        if member.type == LNK:
            target = "/" + "/".join(
                p.decode("utf-8", "surrogateescape") for p in member_parts(member.linkname)
            )
    return Entry(
        path="/" + display_name(b"/".join(parts)),
        type=kind,
        size=real_size(member) if kind == "file" else 0,
        uid=member.uid,
        gid=member.gid,
        mode=member.mode & 0o7777,
        mtime=int(member.mtime),
        target=target,
    )


def browse(backup: Backup, path: str | None = None) -> Iterator[Entry]:
    """The entries at or below ``path`` (all when None), in archive order, as they stream by;
    then an ArchiveError if the compressed stream does not end whole."""
    prefix = path_parts(path) if path else ()
    for member in iter_members(backup.path, compression=backup.compression, to_the_end=True):
        if prefix and not under(member_parts(member.name), prefix):
            continue
        yield to_entry(member)
