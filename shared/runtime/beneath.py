"""Walk a path below a container's root without ever following a symlink.

A container controls its own file tree: a mount point or file path inside it may be a symlink
to a host path. Every walk here goes component by component with ``O_NOFOLLOW``, so it stays
below the root whatever the container has put there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import StateError, StorageError

WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def path_parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"invalid path '{rel}'")
    return parts


def open_beneath(
    root: Path, rel: str, flags: int = os.O_PATH, *, create: tuple[int, int] | None = None
) -> int:
    """An fd for the directory ``root/rel``; no component below ``root`` may be a symlink.

    ``create=(uid, gid)`` makes missing directories (mode 0755, owned by uid:gid). The walk uses
    ``O_PATH``; with other ``flags`` the directory is reopened with them.
    """
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in path_parts(rel):
            nfd = _step(fd, part, rel, create)
            os.close(fd)
            fd = nfd
        if flags != os.O_PATH:
            nfd = os.open(".", flags | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step(fd: int, part: str, rel: str, create: tuple[int, int] | None) -> int:
    try:
        return os.open(part, WALK, dir_fd=fd)
    except FileNotFoundError:
        if create is None:
            raise
        os.mkdir(part, 0o755, dir_fd=fd)
        os.chown(part, *create, dir_fd=fd, follow_symlinks=False)
        return os.open(part, WALK, dir_fd=fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StorageError(
                f"path '{rel}' crosses a symlink or a file in the container"
            ) from None
        raise


def ensure_dir(root: Path, rel: str, uid: int, gid: int) -> Path:
    """``root/rel`` as a real directory below ``root``, creating what is missing."""
    os.close(open_beneath(root, rel, create=(uid, gid)))
    return root.joinpath(*path_parts(rel))


def check_mount_point(root: Path, path: str) -> None:
    """A running container's mount point ``path`` as seen below ``root`` (``/proc/<pid>/root``)
    is a real directory reached without a symlink: read through ``root`` by path, an absolute
    symlink the container made would resolve on the host."""
    try:
        os.close(open_beneath(root, path))
    except FileNotFoundError:
        raise StateError(f"mount point path '{path}' is missing in the container") from None
