"""btrfs storage: Proxmox's BTRFSPlugin layout, with subvolume snapshots.

    images/<vmid>/subvol-<vmid>-disk-<n>.subvol/          a subvolume (container directory volume)
    images/<vmid>/vm-<vmid>-disk-<n>/disk.raw             a raw image inside its own subvolume
    images/<vmid>/subvol-<vmid>-disk-<n>.subvol@<snap>/   read-only snapshot subvolumes
    images/<vmid>/vm-<vmid>-disk-<n>@<snap>/disk.raw

Volume names are the directory storage's (``<vmid>/vm-<vmid>-disk-<n>.raw``). Sizes of subvolumes
become qgroup limits when quotas are enabled on the file system and are ignored otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from .. import syscalls
from ..errors import CtkitError, NotFoundError, StorageError
from ..formats.types import FormatError, check_configid, format_size
from ..safefile import READ_DIR
from . import cmd, loop
from .dirplugin import DirStorage, pad_kib, remove_if_empty
from .listing import VolumeEntry
from .volid import VolName, base_name

BTRFS_FIRST_FREE_OBJECTID = 256
_F = frozenset
BTRFS_FEATURES = {
    "snapshot": {"current": _F({"qcow2", "raw", "subvol"}), "snap": _F({"qcow2", "raw", "subvol"})},
    "clone": {
        "base": _F({"qcow2", "raw", "subvol", "vmdk"}),
        "current": _F({"raw"}),
        "snap": _F({"raw"}),
    },
    "template": {"current": _F({"qcow2", "raw", "vmdk", "subvol"})},
    "copy": {
        "base": _F({"qcow2", "raw", "subvol", "vmdk"}),
        "current": _F({"qcow2", "raw", "subvol", "vmdk"}),
        "snap": _F({"qcow2", "raw", "subvol"}),
    },
    "sparseinit": {"base": _F({"qcow2", "raw", "vmdk"}), "current": _F({"qcow2", "raw", "vmdk"})},
    "rename": {"current": _F({"qcow2", "raw", "vmdk"})},
}
# "different to Plugin.pm the regex also excludes '@'": snapshots are not volumes
_BTRFS_IMAGE_RE = re.compile(r"[^/@.]+(?:\.(qcow2|vmdk|subvol))?")
# _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args): 1024 bytes, the fsid at offset 16
_BTRFS_IOC_FS_INFO = 0x8400941F
_SYSFS_BTRFS = Path("/sys/fs/btrfs")
# _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2): 4096 bytes; the source's fd, a transid, the
# flags, 32 reserved bytes, then the new subvolume's name (at most 4039 bytes and a NUL)
_BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417
_BTRFS_SUBVOL_RDONLY = 1 << 1
_VOL_ARGS_V2_NAME = 56
# _IOW(0x94, 14 and 15, struct btrfs_ioctl_vol_args): 4096 bytes; an fd, then the name (at most
# 4087 bytes and a NUL)
_BTRFS_IOC_SUBVOL_CREATE = 0x5000940E
_BTRFS_IOC_SNAP_DESTROY = 0x5000940F
_VOL_ARGS_NAME = 8
_VOL_ARGS_SIZE = 4096


def _remove_rollback_temps(subvol: Path) -> None:
    """A rollback killed between its snapshot copy and the removal of the old state leaves a
    ``<subvol>.tmp.<pid>`` subvolume. A rollback runs under the container's ``rollback`` lock,
    so one met by the next rollback of the volume (or the recovery finishing it) is stale."""
    stale = re.compile(re.escape(subvol.name) + r"\.tmp\.[0-9]+")
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(subvol.parent):
            path = Path(entry.path)
            if stale.fullmatch(entry.name) and not entry.is_symlink() and is_subvolume(path):
                delete_subvolume_tree(path)


def is_subvolume(path: Path) -> bool:
    """What btrfs-progs checks: a directory whose inode is the subvolume root."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_FIRST_FREE_OBJECTID


def _vol_args(name: Path, offset: int, what: str = "subvolume") -> bytearray:
    """An ioctl's argument: a zero fd, then the last part of ``name`` (a subvolume's name in
    its parent directory) at ``offset``, checked as the tool checks it."""
    raw = os.fsencode(name.name)
    if not raw or len(raw) >= _VOL_ARGS_SIZE - offset or name.name in (".", ".."):
        raise StorageError(f"invalid {what} name '{name.name}'")
    args = bytearray(_VOL_ARGS_SIZE)
    args[offset : offset + len(raw)] = raw
    return args


def _in_parent(path: Path, request: int, args: bytearray) -> None:
    """``request`` on the directory that holds ``path``: the ioctls of btrfs's subvolume
    commands, without a process each (a backup in snapshot mode deletes one per guest, a
    ``pct create`` makes one)."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(parent, request, args)
    finally:
        os.close(parent)


def create_subvolume(path: Path) -> None:
    """``btrfs subvolume create path``."""
    try:
        _in_parent(path, _BTRFS_IOC_SUBVOL_CREATE, _vol_args(path, _VOL_ARGS_NAME))
    except OSError as exc:
        raise StorageError(f"unable to create subvolume '{path}' - {exc.strerror}") from None


def delete_subvolume(path: Path) -> None:
    """``btrfs subvolume delete path``, for the entry ``path`` itself: a symbolic link in its
    place is no subvolume (EINVAL), where the tool resolved it and deleted what it named."""
    try:
        _in_parent(path, _BTRFS_IOC_SNAP_DESTROY, _vol_args(path, _VOL_ARGS_NAME))
    except OSError as exc:
        raise StorageError(f"unable to delete subvolume '{path}' - {exc.strerror}") from None


def delete_subvolume_tree(path: Path) -> None:
    """``btrfs subvolume delete --recursive path``: the subvolumes made inside ``path`` first,
    deepest first. Any process in a container may make one in its root (docker's btrfs driver
    does, as does machined): deleting the volume, or the old state a rollback replaced, then
    failed with "Directory not empty", and the destroy or the rollback stopped half-way. The
    container is stopped: nothing in the tree moves meanwhile."""
    from .foreign import nested_subvolumes

    for rel in nested_subvolumes(path) or ():
        delete_subvolume_tree(path / rel)
    delete_subvolume(path)


def snapshot_subvolume(source: Path, target: Path, *, readonly: bool = False) -> None:
    """``btrfs subvolume snapshot [-r] source target`` as one ioctl. A backup takes its
    snapshot while the container is frozen, where starting the tool (fork, exec, loading) cost
    more than the snapshot itself and grew with the host's load. As the tool does, only a
    subvolume is taken, checked on the opened descriptor (a path swapped meanwhile cannot
    change what is snapshotted), with its own message rather than the kernel's EINVAL."""
    args = _vol_args(target, _VOL_ARGS_V2_NAME, "snapshot")
    try:
        src = os.open(source, READ_DIR)
    except OSError as exc:
        raise StorageError(f"cannot snapshot '{source}' - {exc.strerror}") from None
    try:
        if os.fstat(src).st_ino != BTRFS_FIRST_FREE_OBJECTID:
            raise StorageError(f"cannot snapshot '{source}' - not a subvolume")
        struct.pack_into("<qQQ", args, 0, src, 0, _BTRFS_SUBVOL_RDONLY if readonly else 0)
        _in_parent(target, _BTRFS_IOC_SNAP_CREATE_V2, args)
    except OSError as exc:
        raise StorageError(f"cannot snapshot '{source}' as '{target}' - {exc.strerror}") from None
    finally:
        os.close(src)


def fs_uuid(path: Path) -> str | None:
    """The UUID of the btrfs file system holding ``path`` (its directory under /sys/fs/btrfs),
    or None when ``path`` is on another file system. One ioctl instead of a child process:
    every btrfs storage command asks this."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = bytearray(1024)
        fcntl.ioctl(fd, _BTRFS_IOC_FS_INFO, info)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return None
        raise
    finally:
        os.close(fd)
    h = info[16:32].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rename_exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths (renameat2 with RENAME_EXCHANGE)."""
    syscalls.rename_exchange(str(a), str(b))


def btrfs(*args: str) -> str:
    """Run a btrfs command that changes something (quietly, as Proxmox does)."""
    return cmd.run(["btrfs", "-q", *args])


def btrfs_query(*args: str) -> str:
    """Run a btrfs command for its output (``-q`` would silence it)."""
    return cmd.run(["btrfs", *args])


def check_snapshot_name(snap: str) -> None:
    try:
        check_configid(snap)
    except FormatError:
        raise StorageError(f"invalid snapshot name '{snap}'") from None


class BtrfsStorage(DirStorage):
    type_name = "btrfs"
    FEATURES = BTRFS_FEATURES

    def activate(self) -> None:
        super().activate()
        if fs_uuid(self.path) is None:
            raise StorageError(f"'{self.path}' is not a btrfs file system")

    # --- layout ---------------------------------------------------------------------------

    def image_path(self, vol: VolName, snapshot: str | None = None) -> Path:
        assert vol.vmid is not None
        base = self.image_dir(vol.vmid)
        at = f"@{snapshot}" if snapshot else ""
        if vol.format == "raw":
            return base / f"{vol.name.removesuffix('.raw')}{at}" / "disk.raw"
        if vol.format == "subvol":
            return base / f"{vol.name}{at}"
        if snapshot is not None:
            raise StorageError("snapshot feature is not available")
        return base / vol.name

    def subvolume_of(self, vol: VolName, snapshot: str | None = None) -> Path:
        """The subvolume that holds a volume (the directory of a raw image's disk.raw)."""
        path = self.image_path(vol, snapshot)
        return path.parent if vol.format == "raw" else path

    def list_images(self, vmid: int | None = None) -> list[VolumeEntry]:
        result = []
        for owner, directory in self._owner_dirs(vmid):
            for name in self.owner_names(owner):
                m = _BTRFS_IMAGE_RE.fullmatch(name)
                if not m:
                    continue
                path = directory / name
                if m.group(1) is None:  # a raw image lives in the subvolume <name>/disk.raw
                    entry = self._image_entry(owner, f"{name}.raw", "raw", path, path / "disk.raw")
                else:
                    entry = self._image_entry(owner, name, m.group(1), path, path)
                if entry is not None:
                    result.append(entry)
        return result

    # --- quotas ---------------------------------------------------------------------------

    def quotas_enabled(self) -> bool:
        """The kernel lists a file system's qgroups in sysfs exactly while quotas are on."""
        fsid = fs_uuid(self.path)
        return fsid is not None and (_SYSFS_BTRFS / fsid / "qgroups").is_dir()

    def _qgroup(self, subvol: Path) -> str:
        return "0/" + btrfs_query("inspect-internal", "rootid", "--", str(subvol)).strip()

    def _qgroup_limit(self, subvol: Path) -> int | None:
        qgroup = self._qgroup(subvol)
        out = btrfs_query("qgroup", "show", "-re", "--raw", "-f", "--", str(subvol))
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == qgroup and len(fields) > 3:
                return int(fields[3]) if fields[3].isdigit() else None
        return None

    def _set_limit(self, subvol: Path, size: int) -> None:
        if size > 0 and self.quotas_enabled():
            btrfs("qgroup", "limit", "--", str(pad_kib(size)), self._qgroup(subvol), str(subvol))

    # --- allocation -----------------------------------------------------------------------

    def default_format(self, size: int) -> str:
        return "subvol"

    def _check_alloc(self, fmt: str, size: int) -> None:
        if fmt not in ("raw", "subvol"):
            raise StorageError(f"unsupported format '{fmt}'")
        if fmt == "raw" and size <= 0:
            raise StorageError("a raw volume needs a size greater than 0")
        self._check_fits(size)

    def _check_fits(self, size: int) -> None:
        """A volume (sparse image or qgroup limit) can never outgrow the file system under it:
        a size beyond it is refused rather than promised."""
        self.activate()
        st = os.statvfs(self.path)
        capacity = st.f_blocks * st.f_frsize
        if size > capacity:
            raise StorageError(
                f"volume size {format_size(size)} exceeds the capacity of storage "
                f"'{self.id}' ({capacity / (1 << 30):.1f}G)"
            )

    def _reserve_volume(self, imgdir: Path, name: str, fmt: str) -> Path:
        subvol = imgdir / name.removesuffix(".raw")
        if subvol.exists():
            raise StorageError(f"disk image '{subvol}' already exists")
        create_subvolume(subvol)
        return subvol

    def _fill_volume(self, target: Path, fmt: str, size: int, uid: int, gid: int) -> None:
        if fmt == "raw":
            self._make_raw(target / "disk.raw", size, uid, gid)
        else:
            os.chown(target, uid, gid)
            self._set_limit(target, size)

    def _discard_volume(self, target: Path, fmt: str) -> None:
        with contextlib.suppress(StorageError, OSError):
            delete_subvolume(target)

    def _make_raw(self, path: Path, size: int, root_uid: int, root_gid: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        if self.props.get("nocow"):
            cmd.run(["chattr", "+C", str(path)])  # only works while the file is empty
        os.truncate(path, pad_kib(size))
        loop.make_ext4(path, root_uid, root_gid)

    def free_volume(self, volname: str) -> bool:
        """Delete a volume's subvolume together with all of its snapshots."""
        vol = self._images_vol(volname)
        if vol.format not in ("raw", "subvol"):
            return super().free_volume(volname)
        subvol = self.subvolume_of(vol)
        if subvol.is_symlink():
            # a link in a volume's place goes, never what it points to (as on a dir storage):
            # ``btrfs subvolume delete`` resolves it and deleted whatever subvolume it named
            subvol.unlink()
            remove_if_empty(subvol.parent)
            return True
        if not subvol.exists():
            remove_if_empty(subvol.parent)  # reserved by a command killed before it made it
            return False
        self._check_unused(volname, self.image_path(vol), vol.format)
        snaps = [self.subvolume_of(vol, s) for s in self.list_snapshots(volname)]
        for path in [*snaps, subvol]:
            if loop.mount_users(path):
                raise StorageError(f"volume '{self.volid(volname)}' is in use ({path})")
        for path in snaps:
            delete_subvolume(path)
        delete_subvolume_tree(subvol)
        _remove_rollback_temps(subvol)  # the old state a failed rollback left
        remove_if_empty(subvol.parent)
        return True

    # --- size -----------------------------------------------------------------------------

    def volume_size(self, volname: str) -> int:
        """raw: the image size; subvol: its qgroup limit, or 0 without one."""
        vol = self._images_vol(volname)
        if vol.format != "subvol":
            return super().volume_size(volname)
        subvol = self.subvolume_of(vol)
        self._existing(volname, subvol)
        if not self.quotas_enabled():
            return 0
        return self._qgroup_limit(subvol) or 0

    def resize_volume(self, volname: str, size: int) -> None:
        vol = self._images_vol(volname)
        self._check_fits(size)
        if vol.format != "subvol":
            super().resize_volume(volname, size)
            return
        subvol = self.subvolume_of(vol)
        self._existing(volname, subvol)
        self._set_limit(subvol, size)

    # --- templates ------------------------------------------------------------------------

    def convert_to_base(self, volname: str) -> str:
        """Rename ``vm-`` → ``base-`` (subvol names stay) and make the subvolume read-only."""
        vol = self._images_vol(volname)
        if vol.format not in ("raw", "subvol"):
            return super().convert_to_base(volname)
        if vol.is_base:
            raise StorageError("create_base not possible with base image")
        if self.list_snapshots(volname):
            raise StorageError(f"volume '{self.volid(volname)}' has snapshots")
        subvol = self.subvolume_of(vol)
        self._existing(volname, subvol)
        newvol = self._base_volname(vol, base_name(vol.name))
        newsubvol = self.subvolume_of(self.parse_volname(newvol))
        if newsubvol != subvol:
            if newsubvol.exists():
                raise StorageError(f"file '{newsubvol}' already exists")
            os.rename(subvol, newsubvol)
        btrfs("property", "set", str(newsubvol), "ro", "true")
        return newvol

    def _volume_root(self, vol: VolName) -> Path:
        """A raw image moves with the subvolume that holds it."""
        return self.subvolume_of(vol)

    def can_clone(self, volname: str) -> bool:
        """A base volume, or a subvolume a template made read-only (subvol names stay)."""
        vol = self._images_vol(volname)
        if vol.format not in ("raw", "subvol"):
            return False
        if vol.is_base:
            return True
        subvol = self.subvolume_of(vol)
        with contextlib.suppress(CtkitError):
            return btrfs_query("property", "get", str(subvol), "ro").strip() == "ro=true"
        return False

    def clone_image(
        self,
        volname: str,
        vmid: int,
        snapshot: str | None = None,
        *,
        reserved: Callable[[str], None] | None = None,
    ) -> str:
        """A writable snapshot of a template's subvolume: shares every extent with its base."""
        vol = self._images_vol(volname)
        if not self.can_clone(volname):
            return super().clone_image(volname, vmid, snapshot, reserved=reserved)
        source = self.subvolume_of(vol, snapshot)
        self._existing(volname, source)
        imgdir = self.image_dir(vmid)
        with self.alloc_lock():
            name = self.find_free_diskname(vmid, vol.format or "subvol")
            made = f"{vol.vmid}/{vol.name}/{vmid}/{name}"
            if reserved is not None:  # on record before it exists: a kill leaves no nameless copy
                reserved(made)
            imgdir.mkdir(parents=True, exist_ok=True)
            snapshot_subvolume(source, imgdir / name.removesuffix(".raw"))
        return made

    # --- snapshots ------------------------------------------------------------------------

    def list_snapshots(self, volname: str) -> list[str]:
        """Names of the snapshots of a volume (``<subvolume>@<name>`` subvolumes)."""
        vol = self._images_vol(volname)
        subvol = self.subvolume_of(vol)
        prefix = subvol.name + "@"
        return sorted(
            n[len(prefix) :]
            for n in self.owner_names(vol.vmid or 0)
            if n.startswith(prefix) and is_subvolume(subvol.parent / n)
        )

    def snapshot_create(self, volname: str, snap: str) -> None:
        check_snapshot_name(snap)
        vol = self._images_vol(volname)
        subvol, target = self.subvolume_of(vol), self.subvolume_of(vol, snap)
        self._existing(volname, subvol)
        if target.exists():
            raise StorageError(
                f"snapshot '{snap}' of volume '{self.volid(volname)}' already exists"
            )
        snapshot_subvolume(subvol, target, readonly=True)

    def _snapshot(self, volname: str, snap: str) -> tuple[VolName, Path, Path]:
        check_snapshot_name(snap)
        vol = self._images_vol(volname)
        subvol, source = self.subvolume_of(vol), self.subvolume_of(vol, snap)
        if not is_subvolume(source):
            raise NotFoundError(
                f"snapshot '{snap}' of volume '{self.volid(volname)}' does not exist"
            )
        return vol, subvol, source

    def snapshot_rollback(self, volname: str, snap: str, size: int | None = None) -> None:
        """Replace the volume by a writable copy of the snapshot, atomically (RENAME_EXCHANGE).
        A subvolume's quota limit is ``size`` (the snapshot config's), else the one it had: the
        limit it had before a rollback stayed after it, while the config named the snapshot's
        smaller size, and the next resize counted from the limit no config showed."""
        vol, subvol, source = self._snapshot(volname, snap)
        self._check_unused(volname, self.image_path(vol), vol.format)
        limit = None
        if self.quotas_enabled():
            limit = size if size and vol.format == "subvol" else self._qgroup_limit(subvol)
        _remove_rollback_temps(subvol)
        tmp = subvol.with_name(f"{subvol.name}.tmp.{os.getpid()}")
        snapshot_subvolume(source, tmp)
        try:
            rename_exchange(tmp, subvol)
        except OSError as err:
            with contextlib.suppress(StorageError, OSError):
                delete_subvolume(tmp)
            raise StorageError(
                f"failed to rotate '{tmp}' into place at '{subvol}' - {err}"
            ) from None
        delete_subvolume_tree(tmp)  # the old state
        if limit:
            self._set_limit(subvol, limit)

    def snapshot_delete(self, volname: str, snap: str) -> None:
        _vol, _subvol, source = self._snapshot(volname, snap)
        if loop.mount_users(source):
            raise StorageError(f"snapshot '{snap}' of volume '{self.volid(volname)}' is in use")
        delete_subvolume(source)

    def snapshot_path(self, volname: str, snap: str) -> Path:
        """The read-only snapshot to mount or read (raw: its ``disk.raw``)."""
        check_snapshot_name(snap)
        return self.image_path(self._images_vol(volname), snap)

    def needs_fsfreeze(self, volname: str) -> bool:
        """An ext4 inside a raw image must be frozen for a clean (mountable) snapshot."""
        return self._images_vol(volname).format == "raw"
