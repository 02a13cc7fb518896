"""Directory storage: container volumes as raw ext4 images or plain directories (pct §2.4).

    images/<vmid>/vm-<vmid>-disk-<n>.raw        size > 0: sparse file, mkfs.ext4 -O mmp
    images/<vmid>/subvol-<vmid>-disk-<n>.subvol size 0: a directory owned by the CT's root
    images/<vmid>/base-<vmid>-disk-<n>.raw      a template's (read-only) image

A directory storage has no snapshots.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from .. import paths
from ..errors import CommandError, NotFoundError, StorageError
from ..safefile import remove_tree
from . import cmd, loop
from .base import Storage, too_large
from .listing import VolumeEntry
from .volid import VolName, base_name, disk_index_re, disk_name

MAX_VOLUMES_PER_GUEST = 1024
ALLOC_FORMATS = ("raw", "subvol")
_IMAGE_FILE_RE = re.compile(r"[^/]+\.(raw|qcow2|vmdk|subvol)")
_F = frozenset

DIR_FEATURES = {
    "snapshot": {"current": _F({"qcow2"}), "snap": _F({"qcow2"})},
    "clone": {"base": _F({"qcow2", "raw", "vmdk"})},
    "template": {"current": _F({"qcow2", "raw", "vmdk", "subvol"})},
    "copy": {
        "base": _F({"qcow2", "raw", "vmdk"}),
        "current": _F({"qcow2", "raw", "vmdk"}),
        "snap": _F({"qcow2"}),
    },
    "sparseinit": {"base": _F({"qcow2", "raw", "vmdk"}), "current": _F({"qcow2", "raw", "vmdk"})},
    "rename": {"current": _F({"qcow2", "raw", "vmdk"})},
}


def pad_kib(size: int) -> int:
    """Sizes are handled in whole KiB, as Proxmox does."""
    return size + (1024 - size % 1024) % 1024


class DirStorage(Storage):
    type_name = "dir"
    FEATURES = DIR_FEATURES

    # --- names and listing ----------------------------------------------------------------

    def _images_vol(self, volname: str) -> VolName:
        vol = self.parse_volname(volname)
        if vol.vtype != "images" or vol.vmid is None:
            raise StorageError(
                f"unable to use volume {self.volid(volname)} - content type needs to be 'rootdir'"
            )
        return vol

    def owner_names(self, vmid: int) -> list[str]:
        """Every entry name in ``images/<vmid>/``; none when that is a symlink (ctkit makes
        none): another container's directory linked there passed for this one's, and
        ``destroy --destroy-unreferenced-disks`` freed that container's volumes."""
        directory = self.image_dir(vmid)
        try:
            if directory.is_symlink():
                return []
            return sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def find_free_diskname(self, vmid: int, fmt: str) -> str:
        """The first disk index not used by any name of ``vmid`` on this storage."""
        rx = disk_index_re(vmid)
        used = {int(m.group(1)) for n in self.owner_names(vmid) if (m := rx.fullmatch(n))}
        for index in range(MAX_VOLUMES_PER_GUEST):
            if index not in used:
                return disk_name(vmid, index, fmt)
        raise StorageError(f"unable to allocate an image name for VM {vmid} in storage '{self.id}'")

    def _owner_dirs(self, vmid: int | None) -> list[tuple[int, Path]]:
        top = self.subdir("images")
        if vmid is not None:
            return [(vmid, top / str(vmid))]
        try:
            names = sorted(n for n in os.listdir(top) if re.fullmatch(r"[1-9][0-9]*", n))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [(int(n), top / n) for n in names]

    def list_images(self, vmid: int | None = None) -> list[VolumeEntry]:
        """Container (and VM) images, optionally of one owner."""
        result = []
        for owner, directory in self._owner_dirs(vmid):
            for name in self.owner_names(owner):
                m = _IMAGE_FILE_RE.fullmatch(name)
                if not m:
                    continue
                path = directory / name
                entry = self._image_entry(owner, name, m.group(1), path, path)
                if entry is not None:
                    result.append(entry)
        return result

    def _image_entry(
        self, owner: int, name: str, fmt: str, path: Path, data: Path
    ) -> VolumeEntry | None:
        """The volume at ``path`` (its data at ``data``), or None for what only looks like one:
        a symlink (to a host file or directory, which a rescan adopted and a start then
        mounted into the container), a FIFO, a raw volume that is no file."""
        try:
            st = os.lstat(data)
            if path != data and stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if not (is_dir if fmt == "subvol" else stat.S_ISREG(st.st_mode)):
            return None
        return VolumeEntry(
            volid=self.volid(f"{owner}/{name}"),
            content="rootdir" if paths.ct_conf(owner).exists() else "images",
            format=fmt,
            size=0 if is_dir else st.st_size,
            path=path,
            ctime=int(st.st_ctime),
            vmid=owner,
            used=0 if is_dir else st.st_blocks * 512,
        )

    def list_vmid_volumes(self, vmid: int) -> list[str]:
        return [e.volid for e in self.list_images(vmid)]

    # --- allocation -----------------------------------------------------------------------

    def _check_alloc(self, fmt: str, size: int) -> None:
        if fmt not in ALLOC_FORMATS:
            raise StorageError(f"unsupported format '{fmt}'")
        if fmt == "subvol" and size != 0:
            raise StorageError("storage does not support subvol quotas")
        if fmt == "raw" and size <= 0:
            raise StorageError("a raw volume needs a size greater than 0")

    def _reserve_volume(self, imgdir: Path, name: str, fmt: str) -> Path:
        path = imgdir / name
        try:
            if fmt == "raw":
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            else:
                os.mkdir(path, 0o755)
        except FileExistsError:
            raise StorageError(f"disk image '{path}' already exists") from None
        return path

    def _fill_volume(self, target: Path, fmt: str, size: int, uid: int, gid: int) -> None:
        if fmt == "raw":
            os.truncate(target, pad_kib(size))
            loop.make_ext4(target, uid, gid)
        else:
            os.chmod(target, 0o755)
            os.chown(target, uid, gid)

    def _discard_volume(self, target: Path, fmt: str) -> None:
        self._remove_path(target, fmt)

    def _remove_path(self, path: Path, fmt: str) -> None:
        if fmt == "subvol" and not path.is_symlink():
            remove_tree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        remove_if_empty(path.parent)

    def _check_unused(self, volname: str, path: Path, fmt: str | None) -> None:
        """Refuse to delete a volume that is mounted or attached to a loop device."""
        mounted = loop.mount_users(path) if path.is_dir() and not path.is_symlink() else []
        devs = loop.devices_for(path) if fmt == "raw" and path.is_file() else []
        if mounted or devs:
            where = ", ".join([*map(str, mounted), *devs])
            raise StorageError(f"volume '{self.volid(volname)}' is in use ({where})")

    def free_volume(self, volname: str) -> bool:
        """Delete a container volume; False when it did not exist."""
        vol = self._images_vol(volname)
        path = self.image_path(vol)
        if not (path.exists() or path.is_symlink()):
            remove_if_empty(path.parent)  # reserved by a command killed before it made it
            return False
        self._check_unused(volname, path, vol.format)
        if vol.format == "subvol" and not path.is_symlink():
            remove_tree(path)
        else:
            if vol.is_base and not path.is_symlink():
                _immutable(path, False)
            path.unlink()
        remove_if_empty(path.parent)
        return True

    # --- size -----------------------------------------------------------------------------

    def _existing(self, volname: str, path: Path) -> os.stat_result:
        try:
            return os.stat(path)
        except FileNotFoundError:
            raise NotFoundError(f"volume '{self.volid(volname)}' does not exist") from None

    def volume_size(self, volname: str) -> int:
        """Size in bytes; directory volumes report 0 (their size lives in the CT config)."""
        vol = self._images_vol(volname)
        st = self._existing(volname, self.image_path(vol))
        return 0 if stat.S_ISDIR(st.st_mode) else st.st_size

    def resize_volume(self, volname: str, size: int) -> None:
        """Grow a raw image (the file system inside is the caller's job); shrinking is refused."""
        vol = self._images_vol(volname)
        path = self.image_path(vol)
        st = self._existing(volname, path)
        if vol.format == "subvol":
            return
        size = pad_kib(size)
        if size < st.st_size:
            raise StorageError("unable to shrink disk size")
        try:
            os.truncate(path, size)
        except (OSError, OverflowError) as err:  # beyond what the file system holds
            raise StorageError(f"unable to resize volume '{volname}' - {too_large(err)}") from None

    def volume_format(self, volname: str) -> str:
        fmt = self._images_vol(volname).format
        assert fmt is not None
        return fmt

    # --- templates ------------------------------------------------------------------------

    def _base_volname(self, vol: VolName, newname: str) -> str:
        prefix = f"{vol.basevmid}/{vol.basename}/" if vol.basename else ""
        return f"{prefix}{vol.vmid}/{newname}"

    def convert_to_base(self, volname: str) -> str:
        """Turn a volume into a template's base volume (``vm-`` → ``base-``, read-only)."""
        vol = self._images_vol(volname)
        if vol.is_base:
            raise StorageError("create_base not possible with base image")
        newname = base_name(vol.name)
        if newname == vol.name:  # subvol directories keep their name (as on Proxmox)
            return volname
        path, newvol = self.image_path(vol), self._base_volname(vol, newname)
        newpath = self.image_path(self.parse_volname(newvol))
        self._existing(volname, path)
        if newpath.exists():
            raise StorageError(f"file '{newpath}' already exists")
        os.rename(path, newpath)
        os.chmod(newpath, 0o444)
        # immutable, as Proxmox makes it: root ignores the mode, and a read-write loop device
        # (pct mount, df) would change the image that linked and full clones start from
        _immutable(newpath, True)
        return newvol

    # --- reassigning ---------------------------------------------------------------------

    def _volume_root(self, vol: VolName) -> Path:
        """What to rename to move a volume: the image itself here."""
        return self.image_path(vol)

    def rename_volume(self, volname: str, target_vmid: int) -> str:
        vol = self._images_vol(volname)
        if vol.is_base or not self.has_feature("rename", volname):
            raise StorageError("Storage does not support moving of this disk to another container")
        source = self._volume_root(vol)
        self._existing(volname, self.image_path(vol))
        imgdir = self.image_dir(target_vmid)
        with self.alloc_lock():
            imgdir.mkdir(parents=True, exist_ok=True)
            name = self.find_free_diskname(target_vmid, vol.format or "raw")
            newvol = f"{target_vmid}/{name}"
            target = self._volume_root(self.parse_volname(newvol))
            if target.exists():
                raise StorageError(f"file '{target}' already exists")
            os.rename(source, target)
        return newvol

    # --- snapshots: none on a directory storage (the base class raises) -------------------

    def list_snapshots(self, volname: str) -> list[str]:
        self._images_vol(volname)
        return []


def _immutable(path: Path, on: bool) -> None:
    """``chattr +i`` / ``-i``; best effort, as on Proxmox (a file system without the flag)."""
    with contextlib.suppress(CommandError):
        cmd.run(["chattr", "+i" if on else "-i", "--", str(path)])


def remove_if_empty(imgdir: Path) -> None:
    """The id's ``images/<vmid>`` once its last volume went (rmdir: only if empty)."""
    with contextlib.suppress(OSError):
        imgdir.rmdir()
