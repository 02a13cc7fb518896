"""Mount a container's root file system and mount points under a directory, and undo it.

Used for starting (the pre-start hook mounts at ``<lxcpath>/<vmid>/rootfs``), ``pct mount``,
create/restore and backups. Mount point directories inside the container are created by walking
the path component by component without following symlinks, so a hostile rootfs cannot make a
mount land outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..ctconfig.config import Config, Section
from ..ctconfig.mountpoints import MountPoint
from ..errors import CommandError, CtkitError, Interrupted, StorageError
from ..storage import cmd, loop
from ..storage.api import volume_path
from ..storage.config import load_config
from ..storage.volumes import mount_volume
from ..writeback import early_writeback, syncfs
from .beneath import ensure_dir

Include = Callable[[MountPoint], bool]
MOUNT_OP = "mount"  # pct mount's owner record, from before its lock until its mounts are made
After = Callable[[MountPoint, Path], None]


def _all(_mp: MountPoint) -> bool:
    return True


def wait_released(conf: Config, timeout: float = loop.RELEASE_WAIT) -> None:
    """LXC reports STOPPED a moment before the kernel lets go of the loop devices of the
    container's raw volumes (its mount namespace goes last): whatever mounts one next (a start,
    a stop-mode backup) failed on it. Wait until they are gone (bounded)."""
    cfg = load_config()
    for mp in conf.mountpoints():
        if mp.type != "volume":
            continue
        try:
            path = volume_path(mp.volume, cfg=cfg)
        except CtkitError:
            continue
        if path.is_file():
            loop.wait_unused(path, timeout)


# ``quota=1`` as Proxmox does it: journaled user and group quotas on the ext4 image; the guest
# initialises and switches them on itself (``quotacheck -cmug /``, ``quotaon /``)
QUOTA_OPTIONS = "usrjquota=aquota.user,grpjquota=aquota.group,jqfmt=vfsv0"


def mount_options(mp: MountPoint, *, read_only: bool = False) -> list[str]:
    """The ``-o`` options of a mount point: ``mountoptions`` is a ``;``-separated list
    (``noatime;nodev``), the schema allows only a few harmless names."""
    listed = str(mp.options.get("mountoptions") or "")
    opts = [o for o in listed.split(";") if o]
    if mp.options.get("acl") is True and mp.type == "volume":
        opts.append("acl")
    ext4_image = mp.type == "volume" and mp.volume.endswith(".raw")
    if mp.options.get("quota") is True and ext4_image and not read_only:
        opts.append(QUOTA_OPTIONS)
    return opts


def ordered(mps: list[MountPoint]) -> list[MountPoint]:
    """rootfs first, then by path so that ``/a`` is mounted before ``/a/b``."""
    return sorted(mps, key=lambda m: (m.key != "rootfs", m.path.rstrip("/").count("/"), m.path))


def watch_writes(handle: loop.Mounted, *, every_volume: bool = False) -> int | None:
    """Before writing into a mounted image-backed volume: a write its storage cannot take (it
    is full: a raw image is sparse) fails only in the background write-back, where the writer
    (tar, cp, rsync) never sees it. A descriptor opened now is told of any such error by
    :func:`check_written`. None for other volumes (their writers see their errors), unless
    ``every_volume``: then any volume is written back at the check (to be on disk)."""
    if handle.loopdev is None and not every_volume:
        return None
    return os.open(handle.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def check_written(handle: loop.Mounted, fd: int) -> None:
    """After writing: the volume is written back, or the write error is raised (the data is
    not on the storage: whatever wrote it must fail, not report success)."""
    try:
        syncfs(fd)
    except OSError as err:
        raise StorageError(
            f"unable to write volume '{handle.source.name}' - {err.strerror} (is its storage full?)"
        ) from None


@contextlib.contextmanager
def _written_back(handles: list[loop.Mounted], check: Callable[[], None]) -> Iterator[None]:
    """Around writing into ``handles``: the images among them are written back while the
    block runs (the final ``check`` then has little left to write), and ``check`` runs at the
    end. Also when the block fails and wrote into an image: written back early, a write the
    storage could not take fails the writer too (the file system goes read-only), and the
    storage is the cause to report."""
    images = [handle.target for handle in handles if handle.loopdev is not None]
    try:
        with early_writeback(images):
            yield
    except CtkitError as err:
        # a signal is answered at once, not after a flush; other volumes' writers see their
        # own errors (and a syncfs there would flush the host's file system)
        if images and not isinstance(err, Interrupted):
            check()
        raise
    check()


@contextlib.contextmanager
def checked_writes(handle: loop.Mounted, *, every_volume: bool = False) -> Iterator[None]:
    """:func:`watch_writes` and :func:`check_written` around writing into one volume, which
    is written back while the block runs (see :func:`_written_back`)."""
    fd = watch_writes(handle, every_volume=every_volume)

    def check() -> None:
        if fd is not None:
            check_written(handle, fd)

    try:
        with _written_back([handle], check):
            yield
    finally:
        if fd is not None:
            os.close(fd)


@dataclass
class MountedTree:
    """What :func:`mount_all` mounted, in mount order."""

    target: Path
    handles: list[loop.Mounted] = field(default_factory=list)
    _watched: list[tuple[loop.Mounted, int]] = field(default_factory=list)

    def watch_writes(self) -> None:
        """Before writing into the volumes: see :func:`watch_writes`."""
        for handle in self.handles:
            fd = watch_writes(handle)
            if fd is not None:
                self._watched.append((handle, fd))

    def flush(self) -> None:
        """After writing: every watched volume is written back, or its write error raised."""
        for handle, fd in self._watched:
            check_written(handle, fd)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around writing into the volumes: :meth:`watch_writes`, the images written back
        while the block runs, and :meth:`flush` at its end (see :func:`_written_back`)."""
        self.watch_writes()
        with _written_back(self.handles, self.flush):
            yield

    def _unwatch(self) -> None:
        for _handle, fd in self._watched:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._watched.clear()

    def unmount(self, *, lazy: bool = False) -> list[str]:
        """Unmount in reverse order; errors are collected, not raised, so cleanup goes on."""
        self._unwatch()  # an open descriptor would keep the mount busy
        problems = []
        for handle in reversed(self.handles):
            try:
                handle.unmount(lazy=lazy)
            except CommandError as err:
                problems.append(str(err))
        self.handles.clear()
        return problems


def mount_one(
    mp: MountPoint, target: Path, *, read_only: bool, snapshot: str | None
) -> loop.Mounted:
    opts = mount_options(mp, read_only=read_only)
    if mp.type == "volume":
        return mount_volume(mp.volume, target, read_only=read_only, options=opts, snapshot=snapshot)
    source = Path(mp.volume)
    if mp.type == "bind":
        if not source.exists():
            raise StorageError(f"mount point source '{source}' does not exist")
        loop.bind_mount(source, target, read_only=read_only, options=opts)
        return loop.Mounted(source, target, "bind")
    cmd.run(["mount", *(["-o", "ro"] if read_only else []), str(source), str(target)])
    return loop.Mounted(source, target, "device")


def mount_all(
    conf: Section,
    target: Path,
    *,
    root_ids: tuple[int, int] = (0, 0),
    include: Include = _all,
    honour_ro: bool = True,
    read_only: bool = False,
    snapshot: str | None = None,
    after: After | None = None,
) -> MountedTree:
    """Mount rootfs and the included mount points under ``target``; all or nothing.
    ``after(mp, where)`` runs after each mount, before the ones below it.

    ``read_only`` (a backup's mounts) keeps every volume as it is, but a mount point whose
    directory is missing (a volume added to a stopped container) cannot be mounted in a
    read-only parent: its directory is first made as a start makes it, in a read-write pass,
    as Proxmox's read-write backup mounts make it. Not in a snapshot or a template's base
    volumes, which never change: said in one line."""
    try:
        return _mount_tree(conf, target, root_ids, include, honour_ro, read_only, snapshot, after)
    except _MissingDir as missing:
        if snapshot is not None or conf.get("template"):
            kind = "a snapshot" if snapshot is not None else "a template's volume"
            raise StorageError(
                f"unable to mount '{missing.path}': the directory is missing in {kind}"
            ) from None
    tree = _mount_tree(conf, target, root_ids, include, honour_ro, False, None, None)
    problems = tree.unmount(lazy=False)
    if problems:
        unmount_below(target)  # lazily: nobody else is told of these mounts
        raise StorageError(problems[0])
    return _mount_tree(conf, target, root_ids, include, honour_ro, read_only, snapshot, after)


class _MissingDir(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _mount_tree(
    conf: Section,
    target: Path,
    root_ids: tuple[int, int],
    include: Include,
    honour_ro: bool,
    read_only: bool,
    snapshot: str | None,
    after: After | None,
) -> MountedTree:
    target.mkdir(parents=True, exist_ok=True)
    tree = MountedTree(target)
    read_only = read_only or bool(conf.get("template"))  # its base volumes never change
    try:
        for mp in ordered([m for m in conf.mountpoints(strict=True) if include(m)]):
            where = target if mp.key == "rootfs" else _mount_dir(target, mp, root_ids, read_only)
            ro = read_only or (honour_ro and mp.ro)
            tree.handles.append(mount_one(mp, where, read_only=ro, snapshot=snapshot))
            if after is not None:
                after(mp, where)
    except BaseException:
        tree.unmount(lazy=True)
        raise
    return tree


def _mount_dir(target: Path, mp: MountPoint, root_ids: tuple[int, int], read_only: bool) -> Path:
    """The directory ``mp`` is mounted on, made where it is missing."""
    try:
        return ensure_dir(target, mp.path, *root_ids)
    except OSError as err:
        if err.errno == errno.EROFS and read_only:
            raise _MissingDir(mp.path) from None
        # in a read-only mount point (ro=1) above it, say
        raise StorageError(f"unable to create mount point '{mp.path}' - {err.strerror}") from None


def unmount_below(path: Path, *, lazy: bool = True) -> list[str]:
    """Unmount everything at or below ``path`` (deepest first), e.g. after a crash."""
    problems = []
    for point in sorted(loop.mounts_under(path), key=lambda p: len(p.parts), reverse=True):
        try:
            loop.unmount(point, lazy=lazy)
        except CommandError as err:
            problems.append(str(err))
    return problems
