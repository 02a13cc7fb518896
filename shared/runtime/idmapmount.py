"""Id-mapped mount points (``mpN: ...,idmap=...``) for unprivileged containers.

``idmap=u:<ct>:<disk>:<n>;g:...`` says which container ids own which on-disk ids on this mount;
ids it does not name keep the container's own map. ``idmap=passthrough`` shows every on-disk id
unchanged inside. The kernel applies it as an id-mapped mount (``mount_setattr`` with
``MOUNT_ATTR_IDMAP``) through a user namespace that maps on-disk ids to host ids; the container's
own map then turns host ids into its ids.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..archive.idmap import IdMapEntry
from ..ctconfig.mountpoints import MountPoint
from ..errors import CtkitError
from . import nsenter


def parse_mp_idmap(text: str) -> list[IdMapEntry]:
    entries = []
    for entry in text.split(";"):
        kind, ct, disk, length = entry.split(":")
        entries.append(IdMapEntry(kind, int(ct), int(disk), int(length)))
    return entries


def disk_to_host(ct_map: Sequence[IdMapEntry], mp_map: Sequence[IdMapEntry]) -> list[IdMapEntry]:
    """The mount's map from on-disk ids to host ids (as Proxmox resolves it): inside each chunk
    of the container's map, ids named by ``mp_map`` come from their disk ids, the rest map as
    the container's own (disk id = host id, so the container sees them as usual)."""
    result: list[IdMapEntry] = []
    for kind in ("u", "g"):
        exceptions = sorted((e for e in mp_map if e.kind == kind), key=lambda e: e.ct)
        for _k, ct_start, host_start, length in (e for e in ct_map if e.kind == kind):
            ct_end = ct_start + length
            inside = [e for e in exceptions if e.ct < ct_end and e.ct + e.length > ct_start]
            cursor = ct_start
            for exc in [*inside, IdMapEntry(kind, ct_end, 0, 0)]:
                start = max(exc.ct, ct_start)
                span = min(exc.ct + exc.length, ct_end) - start
                if cursor < start:
                    host = host_start + cursor - ct_start
                    result.append(IdMapEntry(kind, host, host, start - cursor))
                if span > 0:
                    disk = exc.host + start - exc.ct
                    result.append(IdMapEntry(kind, disk, host_start + start - ct_start, span))
                cursor = start + max(span, 0)
    return result


def new_userns(entries: Sequence[IdMapEntry]) -> int:
    """An fd of a fresh user namespace with ``entries`` as its map (``ns id -> host id``)."""
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            nsenter.unshare(nsenter.CLONE_NEWUSER, "user")
            os.write(ready_w, b"x")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        os.read(ready_r, 1)
        for kind, name in (("u", "uid_map"), ("g", "gid_map")):
            lines = "".join(f"{e.ct} {e.host} {e.length}\n" for e in entries if e.kind == kind)
            if lines:
                with open(f"/proc/{child}/{name}", "w") as fh:
                    fh.write(lines)
        return nsenter.ns_fd(child, "user")
    except OSError as err:
        raise CtkitError(f"unable to create the mount's user namespace: {err.strerror}") from None
    finally:
        os.close(ready_r)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


@contextlib.contextmanager
def mount_userns(mp: MountPoint, ct_map: Sequence[IdMapEntry], pid: int | None) -> Iterator[int]:
    """The user namespace fd the mount ``mp`` is id-mapped through (closed afterwards)."""
    text = str(mp.options.get("idmap"))
    if text == "passthrough" and pid is not None:
        fd = nsenter.ns_fd(pid, "user")
    else:
        mapping = ct_map if text == "passthrough" else disk_to_host(ct_map, parse_mp_idmap(text))
        fd = new_userns(mapping)
    try:
        yield fd
    finally:
        os.close(fd)


def wanted(mp: MountPoint, ct_map: Sequence[IdMapEntry]) -> bool:
    """Whether ``mp`` gets an id-mapped mount: ``idmap=`` set and the container unprivileged."""
    return bool(mp.options.get("idmap")) and bool(ct_map) and mp.key != "rootfs"


def remount_idmapped(where: Path, userns: int, key: str) -> None:
    """Replace the mount at ``where`` by an id-mapped clone of it."""
    tree = nsenter.open_tree(str(where))
    try:
        try:
            nsenter.idmap_tree(tree, userns)
        except OSError as err:
            raise CtkitError(
                f"{key}: the file system does not support id-mapped mounts ({err.strerror})"
            ) from None
        target_parent = os.open(where.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _umount(where)
            target = os.open(where.name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=target_parent)  # fmt: skip
            try:
                nsenter.move_mount(tree, target)
            finally:
                os.close(target)
        finally:
            os.close(target_parent)
    finally:
        os.close(tree)


def _umount(where: Path) -> None:
    from ..storage import loop

    loop.unmount(where)
