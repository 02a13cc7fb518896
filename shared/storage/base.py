"""The Storage class: one configured storage, its directories, content types and checks.

Plugins (``dirplugin``, ``btrfsplugin``) add the container-volume operations. Storage paths come
from storage.cfg as absolute paths and are confined to the ctkit root: a path already below
``CTKIT_ROOT`` is used as is, any other one is taken relative to it (with the root ``/`` both
are the same), so a scratch root never touches the host's ``/var/lib/vz``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .. import paths
from ..errors import ConfigError, StorageError
from ..formats.types import parse_bool
from ..locks import flock
from ..prune import parse_prune_backups
from .hostreach import set_host_reach
from .volid import VolName, format_volid, parse_volname

if TYPE_CHECKING:
    from .listing import VolumeEntry

# content type -> directory below the storage path (Proxmox's vtype_subdirs)
VTYPE_SUBDIRS = {
    "images": "images",
    "rootdir": "private",
    "iso": "template/iso",
    "vztmpl": "template/cache",
    "backup": "dump",
    "snippets": "snippets",
    "import": "import",
}
KNOWN_CONTENT = frozenset({*VTYPE_SUBDIRS, "none"})
DEFAULT_CONTENT = frozenset({"images", "rootdir"})
ALLOC_LOCK_TIMEOUT = 60.0

# feature -> key (current | base | snap) -> formats (Proxmox's volume_has_feature tables)
Features = Mapping[str, Mapping[str, frozenset[str]]]


def resolve_path(configured: str) -> Path:
    """A storage.cfg path confined to the ctkit root (see the module docstring)."""
    root = paths.root()
    path = Path(os.path.normpath(configured))
    if root == Path("/") or path == root or root in path.parents:
        return path
    return paths.under(str(path))


class Storage:
    """A configured storage. ``props`` are the parsed storage.cfg values of its section."""

    type_name: ClassVar[str] = ""
    FEATURES: ClassVar[Features] = {}

    def __init__(
        self, sid: str, props: Mapping[str, Any], unreadable: Mapping[str, str] | None = None
    ) -> None:
        self.id = sid
        self.props = dict(props)
        self.unreadable = dict(unreadable or {})  # options storage.cfg sets but did not parse

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.props.get('path')}>"

    # --- configuration ---------------------------------------------------------------------

    @property
    def configured_path(self) -> str:
        return str(self.props.get("path") or "")

    @property
    def path(self) -> Path:
        if not self.configured_path:
            raise StorageError("storage definition has no path")
        return resolve_path(self.configured_path)

    @property
    def content(self) -> frozenset[str]:
        items = self.props.get("content")
        if items is None:
            return DEFAULT_CONTENT
        return frozenset(i for i in items if i in KNOWN_CONTENT and i != "none")

    @property
    def disabled(self) -> bool:
        return bool(self.props.get("disable"))

    @property
    def shared(self) -> bool:
        return bool(self.props.get("shared"))

    @property
    def nodes(self) -> list[str] | None:
        nodes = self.props.get("nodes")
        return list(nodes) if nodes else None

    @property
    def prune_backups(self) -> dict[str, Any] | None:
        """The storage's retention (normalised), or None when it sets none. One that storage.cfg
        sets but that does not parse raises :class:`ConfigError`: falling back to vzdump.conf's
        retention (as Proxmox does, with a warning) removed the backups it meant to keep."""
        bad = self.unreadable.get("prune-backups")
        if bad is None and "prune-backups" not in self.props:  # the legacy key only counts then
            bad = self.unreadable.get("maxfiles")
        if bad is not None:
            raise ConfigError(f"unable to read the retention of storage '{self.id}' - {bad}")
        raw = self.props.get("prune-backups")
        if raw is None:
            maxfiles = self.props.get("maxfiles")
            if maxfiles is None:
                return None
            return {"keep-last": maxfiles} if maxfiles else {"keep-all": True}
        return parse_prune_backups(str(raw))

    @property
    def max_protected_backups(self) -> int | None:
        value = self.props.get("max-protected-backups")
        return None if value is None else int(value)

    def has_content(self, ctype: str) -> bool:
        return ctype in self.content

    def check_enabled(self, node: str | None = None) -> None:
        """``storage 'x' is disabled`` / ``storage 'x' is not available on node 'n'``."""
        if self.disabled:
            raise StorageError(f"storage '{self.id}' is disabled")
        node = node or paths.node_name()
        if self.nodes is not None and node not in self.nodes:
            raise StorageError(f"storage '{self.id}' is not available on node '{node}'")

    # --- directories -----------------------------------------------------------------------

    def subdir(self, vtype: str) -> Path:
        """The directory of a content type (honouring ``content-dirs`` overrides)."""
        if vtype not in VTYPE_SUBDIRS:
            raise StorageError(f"unknown vtype '{vtype}'")
        overrides = dict(
            item.split("=", 1)
            for item in str(self.props.get("content-dirs") or "").split(",")
            if "=" in item
        )
        return self.path / overrides.get(vtype, VTYPE_SUBDIRS[vtype])

    def image_dir(self, vmid: int) -> Path:
        return self.subdir("images") / str(vmid)

    def _flag(self, key: str, default: bool = True) -> bool:
        value = self.props.get(key)
        return default if value is None else bool(value)

    def activate(self) -> None:
        """Make sure the storage directory (and its content directories) exist. An
        ``is_mountpoint`` storage is checked first, as Proxmox does: a directory made where
        the disk is not mounted would pass for the storage."""
        self._check_mountpoint()
        path = self.path
        if not path.is_dir():
            if not (self._flag("create-base-path", self._flag("mkdir"))):
                raise StorageError(
                    f"unable to activate storage '{self.id}' - directory '{path}' does not "
                    "exist or is unreachable"
                )
            self._make_dir(path)
        if self._flag("create-subdirs", self._flag("mkdir")):
            for vtype in VTYPE_SUBDIRS:
                if vtype in self.content or (vtype == "backup" and "rootdir" in self.content):
                    self._make_dir(self.subdir(vtype))

    def _make_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a full or read-only storage: one line, not a traceback
            raise StorageError(
                f"unable to activate storage '{self.id}' - unable to create directory "
                f"'{path}': {err.strerror or err}"
            ) from None

    def _check_mountpoint(self) -> None:
        value = self.props.get("is_mountpoint")
        if value is None:
            return
        try:
            mountpoint = self.path if parse_bool(str(value)) else None
        except ValueError:
            mountpoint = resolve_path(str(value))
        if mountpoint is not None and not os.path.ismount(mountpoint):
            raise StorageError(
                f"unable to activate storage '{self.id}' - directory is expected to be a mount "
                f"point but is not mounted: '{mountpoint}'"
            )

    # --- volume names ----------------------------------------------------------------------

    def volid(self, volname: str) -> str:
        return format_volid(self.id, volname)

    def parse_volname(self, volname: str) -> VolName:
        return parse_volname(volname)

    def path_of(self, volname: str, snapshot: str | None = None) -> Path:
        """The file-system path of a volume (of one of its snapshots with ``snapshot``)."""
        vol = self.parse_volname(volname)
        if vol.vtype == "images":
            assert vol.vmid is not None
            return self.image_path(vol, snapshot)
        if snapshot is not None:
            raise StorageError("snapshot feature is not available")
        return self.subdir(vol.vtype) / vol.name

    def image_path(self, vol: VolName, snapshot: str | None = None) -> Path:
        if snapshot is not None:
            raise StorageError("snapshot feature is not available")
        assert vol.vmid is not None
        return self.image_dir(vol.vmid) / vol.name

    @contextlib.contextmanager
    def alloc_lock(self) -> Iterator[None]:
        """Serialise allocations on this storage (Proxmox's ``pve-storage-<id>`` lock)."""
        lock = paths.under(f"run/lock/pve-manager/pve-storage-{self.id}")
        with flock(lock, ALLOC_LOCK_TIMEOUT):
            yield

    def has_feature(self, feature: str, volname: str, snapshot: str | None = None) -> bool:
        vol = self.parse_volname(volname)
        key = "snap" if snapshot else ("base" if vol.is_base else "current")
        return vol.format in self.FEATURES.get(feature, {}).get(key, frozenset())

    # --- the container-volume interface (implemented by the plugins) -----------------------

    def _unsupported(self, what: str) -> StorageError:
        return StorageError(f"storage '{self.id}' (type {self.type_name}) does not support {what}")

    def list_images(self, vmid: int | None = None) -> list[VolumeEntry]:
        raise self._unsupported("images")

    def list_vmid_volumes(self, vmid: int) -> list[str]:
        raise self._unsupported("images")

    def alloc_volume(
        self,
        vmid: int,
        size: int,
        *,
        root_uid: int = 0,
        root_gid: int = 0,
        fmt: str | None = None,
        reserved: Callable[[str], None] | None = None,
    ) -> str:
        """Allocate (and format) a container volume; returns its volume name.

        The name is reserved under the allocation lock (an empty file, directory or
        subvolume); the slow part (mkfs) runs outside it and is undone if it fails.
        ``reserved(volname)`` runs once the name is chosen, before the volume exists: a caller
        that can be killed records there the volume it is about to own (a record of one that
        never came to be is harmless; a volume that no record names is lost).
        """
        fmt = fmt or self.default_format(size)
        self._check_alloc(fmt, size)
        self.activate()
        imgdir = self.image_dir(vmid)
        with self.alloc_lock():
            name = self.find_free_diskname(vmid, fmt)
            if reserved is not None:  # before anything exists: even the id's directory
                reserved(f"{vmid}/{name}")
            imgdir.mkdir(parents=True, exist_ok=True)
            set_host_reach(imgdir, (root_uid, root_gid))
            target = self._reserve_volume(imgdir, name, fmt)
        try:
            self._fill_volume(target, fmt, size, root_uid, root_gid)
        except BaseException as err:
            self._discard_volume(target, fmt)
            if isinstance(err, OSError | OverflowError):  # a size beyond what a file can be
                raise StorageError(
                    f"unable to allocate volume '{name}' on storage '{self.id}' - {too_large(err)}"
                ) from None
            raise
        return f"{vmid}/{name}"

    def default_format(self, size: int) -> str:
        return "raw" if size > 0 else "subvol"

    def _check_alloc(self, fmt: str, size: int) -> None:
        raise self._unsupported("container volumes")

    def find_free_diskname(self, vmid: int, fmt: str) -> str:
        raise self._unsupported("container volumes")

    def _reserve_volume(self, imgdir: Path, name: str, fmt: str) -> Path:
        raise self._unsupported("container volumes")

    def _fill_volume(self, target: Path, fmt: str, size: int, uid: int, gid: int) -> None:
        raise self._unsupported("container volumes")

    def _discard_volume(self, target: Path, fmt: str) -> None:
        raise self._unsupported("container volumes")

    def free_volume(self, volname: str) -> bool:
        raise self._unsupported("container volumes")

    def volume_size(self, volname: str) -> int:
        raise self._unsupported("container volumes")

    def resize_volume(self, volname: str, size: int) -> None:
        raise self._unsupported("container volumes")

    def volume_format(self, volname: str) -> str:
        raise self._unsupported("container volumes")

    def convert_to_base(self, volname: str) -> str:
        raise self._unsupported("templates")

    def rename_volume(self, volname: str, target_vmid: int) -> str:
        """Give a volume to another guest (a new name of ``target_vmid``); returns the name."""
        raise self._unsupported("renaming volumes")

    def can_clone(self, volname: str) -> bool:
        """Whether :meth:`clone_image` can make a linked clone of this volume."""
        return False

    def clone_image(
        self,
        volname: str,
        vmid: int,
        snapshot: str | None = None,
        *,
        reserved: Callable[[str], None] | None = None,
    ) -> str:
        """A linked clone of a template's base volume for ``vmid``; returns its volume name.
        ``reserved(volname)`` runs once the name is chosen, before the clone exists, as for
        :meth:`alloc_image`."""
        raise StorageError(f"Linked clone feature for '{self.volid(volname)}' is not available")

    def list_snapshots(self, volname: str) -> list[str]:
        return []

    def snapshot_create(self, volname: str, snap: str) -> None:
        raise StorageError("snapshot feature is not available")

    def snapshot_rollback(self, volname: str, snap: str, size: int | None = None) -> None:
        """Roll the volume back to ``snap``; ``size`` is the volume's size the snapshot's config
        names (a volume whose size is a limit apart from its data takes it back)."""
        raise StorageError("snapshot feature is not available")

    def snapshot_delete(self, volname: str, snap: str) -> None:
        raise StorageError("snapshot feature is not available")

    def snapshot_path(self, volname: str, snap: str) -> Path:
        raise StorageError("snapshot feature is not available")

    def needs_fsfreeze(self, volname: str) -> bool:
        return False


def too_large(err: OSError | OverflowError) -> str:
    """The reason a volume cannot get a size, in one line."""
    if isinstance(err, OverflowError):
        return "File too large"
    return err.strerror or str(err)
