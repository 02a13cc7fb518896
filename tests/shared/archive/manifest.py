"""Test helper: record everything an archive round trip must preserve about a tree.

``record(root)`` maps each relative path (bytes; ``b"."`` is the root) to a dict with: type,
mode (permission bits incl. setuid/sticky), uid, gid, mtime_ns, size, sha256
and data segments (holes) of regular files, hard-link group, symlink target, device numbers,
POSIX ACLs (parsed, so ids can be shifted) and the xattrs an archive carries (``user.*`` and
``security.capability``). ``shifted`` applies an id-map offset the way the kernel shows a
tree written inside a user namespace; ``diff`` lists differences readably.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

Manifest = dict[bytes, dict[str, Any]]

ARCHIVED_XATTRS = (b"user.", b"security.capability")
_ACL_KEYS = {"acl_access": "system.posix_acl_access", "acl_default": "system.posix_acl_default"}
_ACL_USER, _ACL_GROUP = 0x02, 0x08  # tags whose id field is meaningful


def _type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "chr"),
        (stat.S_ISBLK, "blk"),
        (stat.S_ISSOCK, "sock"),
    ):
        if test(mode):
            return name
    return "unknown"


def _segments(path: bytes, size: int) -> list[tuple[int, int]]:
    """Data ranges of a file (SEEK_DATA/SEEK_HOLE): the holes are what is between them."""
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


def _sha256(path: bytes) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parse_acl(raw: bytes) -> list[tuple[int, int, int]]:
    """(tag, perm, id) entries of a ``system.posix_acl_*`` value; id is -1 where unused."""
    entries = []
    for off in range(4, len(raw), 8):
        tag = int.from_bytes(raw[off : off + 2], "little")
        perm = int.from_bytes(raw[off + 2 : off + 4], "little")
        ident = int.from_bytes(raw[off + 4 : off + 8], "little")
        entries.append((tag, perm, ident if tag in (_ACL_USER, _ACL_GROUP) else -1))
    return sorted(entries)


def _xattrs(path: bytes, is_link: bool) -> tuple[dict[str, bytes], dict[str, list[Any]]]:
    plain: dict[str, bytes] = {}
    acls: dict[str, list[Any]] = {}
    if is_link:
        return plain, acls
    for name in os.listxattr(path, follow_symlinks=False):
        if name.encode().startswith(ARCHIVED_XATTRS):
            plain[name] = os.getxattr(path, name, follow_symlinks=False)
    for key, attr in _ACL_KEYS.items():
        try:
            acls[key] = parse_acl(os.getxattr(path, attr, follow_symlinks=False))
        except OSError as err:
            if err.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return plain, acls


def _entry(path: bytes, st: os.stat_result) -> dict[str, Any]:
    kind = _type(st.st_mode)
    entry: dict[str, Any] = {
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    entry["mtime_ns"] = st.st_mtime_ns
    if kind == "file":
        entry["size"] = st.st_size
        entry["sha256"] = _sha256(path)
        entry["segments"] = _segments(path, st.st_size)
    elif kind == "symlink":
        entry["target"] = os.readlink(path)
    elif kind in ("chr", "blk"):
        entry["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    xattrs, acls = _xattrs(path, kind == "symlink")
    if xattrs:
        entry["xattrs"] = xattrs
    entry.update(acls)
    return entry


def record(root: Path | str) -> Manifest:
    """The manifest of the tree under ``root`` (the root itself included as ``b"."``)."""
    base = os.fsencode(root)
    out: Manifest = {b".": _entry(base, os.lstat(base))}
    inodes: dict[tuple[int, int], bytes] = {}
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(base, rel_dir) if rel_dir else base) as it:
            entries = sorted(it, key=lambda e: e.name)
        for de in entries:
            rel = os.path.join(rel_dir, de.name) if rel_dir else de.name
            st = os.lstat(de.path)
            entry = _entry(de.path, st)
            if entry["type"] == "file" and st.st_nlink > 1:
                entry["link_group"] = inodes.setdefault((st.st_dev, st.st_ino), rel)
            out[rel] = entry
            if entry["type"] == "dir":
                stack.append(rel)
    # Hard-link groups are named by the first path in sorted order, independent of walk order.
    groups: dict[bytes, bytes] = {}
    for rel in sorted(out):
        group = out[rel].get("link_group")
        if group is not None:
            out[rel]["link_group"] = groups.setdefault(group, rel)
    return out


def _capability_v3(value: bytes, rootid: int) -> bytes:
    """A v2 file capability as it reads back from the host after being set in a namespace."""
    magic = int.from_bytes(value[:4], "little")
    if magic >> 24 != 0x02:
        return value
    v3 = (magic & 0x00FFFFFF) | 0x03000000
    return v3.to_bytes(4, "little") + value[4:20] + rootid.to_bytes(4, "little")


def shifted(manifest: Manifest, uid_offset: int, gid_offset: int) -> Manifest:
    """The manifest as it should look after extraction under an id map with these offsets."""
    out = copy.deepcopy(manifest)
    for entry in out.values():
        entry["uid"] += uid_offset
        entry["gid"] += gid_offset
        for key in _ACL_KEYS:
            if key in entry:
                entry[key] = sorted(
                    (
                        tag,
                        perm,
                        ident + (uid_offset if tag == _ACL_USER else gid_offset)
                        if ident >= 0
                        else ident,
                    )
                    for tag, perm, ident in entry[key]
                )
        caps = entry.get("xattrs", {})
        if "security.capability" in caps:
            caps["security.capability"] = _capability_v3(caps["security.capability"], uid_offset)
    return out


def without(manifest: Manifest, *kinds: str) -> Manifest:
    """The manifest minus entries of the given types (e.g. devices an unprivileged CT drops)."""
    return {k: v for k, v in manifest.items() if v["type"] not in kinds}


def diff(expected: Manifest, actual: Manifest) -> list[str]:
    """Readable differences; empty when the trees match."""
    out = []
    for rel in sorted(set(expected) | set(actual)):
        name = rel.decode(errors="backslashreplace")
        if rel not in actual:
            out.append(f"missing: {name!r}")
        elif rel not in expected:
            out.append(f"unexpected: {name!r}")
        elif expected[rel] != actual[rel]:
            keys = sorted(set(expected[rel]) | set(actual[rel]))
            for key in keys:
                a, b = expected[rel].get(key), actual[rel].get(key)
                if a != b:
                    out.append(f"{name!r} {key}: expected {a!r}, got {b!r}")
    return out
