"""``pct resize``, ``df``, ``cpusets``, ``fstrim``, ``push`` and ``pull`` (spec pct.md §1, §8).

Paths inside a container are never resolved by the host's rules: ``df`` and ``fstrim`` walk from
the container root without following symlinks, and ``push``/``pull`` open files in a child process
that has entered the container's mount namespace (and, for an unprivileged container, its user
namespace), so a symlink the container controls resolves inside it and a file opens only where
the container's root may open it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import re
import stat
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared import paths, signals
from shared.atomic import fsync_dir, pid_alive
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint, check_volume_key, volume_owner
from shared.ctconfig.options import MAX_ID, MOUNTED_LOCK
from shared.ctconfig.pending import DIGEST_MISMATCH
from shared.errors import (
    CommandError,
    CtkitError,
    NotFoundError,
    ParamError,
    StateError,
    StorageError,
    VerifyError,
)
from shared.formats.digits import ascii_int
from shared.formats.types import FormatError, parse_size
from shared.locks import config_lock
from shared.pseudofs import pseudo_fs_name
from shared.regularfile import read_regular
from shared.runtime import lxcapi
from shared.runtime.beneath import open_beneath
from shared.runtime.cgroups import CGroup
from shared.runtime.guestview import config_root_ids
from shared.runtime.mounts import mount_all
from shared.runtime.nsenter import in_container
from shared.storage import cmd, loop
from shared.storage.api import get_storage, volume_path
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import (
    clear_interrupted_check,
    resize_volume,
    volume_format,
    volume_size,
)

Log = Callable[[str], None]
RESIZE_RE = re.compile(r"(\+)?(\d+(?:\.\d+)?[KMGT]?)")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# --- resize ---------------------------------------------------------------------------------


FS_BLOCK = 4096  # the largest block mkfs.ext4 gives a container's file system


def new_size(text: str, current: int) -> int:
    """``[+]<n>[KMGT]`` (bytes without a unit) as the new size in bytes."""
    m = RESIZE_RE.fullmatch(text)
    if not m:
        raise ParamError({"size": "value does not match the regex pattern"})
    try:
        size = parse_size(m.group(2))
    except FormatError as err:  # digits beyond any size
        raise ParamError({"size": str(err)}) from None
    return int(size + current if m.group(1) else size)


def _mountpoint(conf: Config, disk: str) -> MountPoint:
    check_volume_key("disk", disk)
    mp = next((m for m in conf.mountpoints() if m.key == disk), None)
    if mp is None:
        raise CtkitError(f"disk '{disk}' does not exist")
    if mp.type != "volume":
        raise StorageError(f"unable to parse volume ID '{mp.volume}'")
    owner = volume_owner(mp.volume)
    if owner != conf.vmid:
        raise StateError(f"can't resize mount point owned by another container ({owner})")
    return mp


def _current_size(mp: MountPoint, fmt: str) -> int:
    size = volume_size(mp.volume)
    if fmt == "subvol" and size == 0:
        # a directory volume without a quota has no size of its own: the config knows it
        return mp.size or 0
    return size


def resize(
    vmid: int, disk: str, size: str, *, digest: str | None = None, log: Log = _stderr
) -> int:
    """Grow a volume and the ext4 inside it; returns the new size in bytes."""
    new_size(size, 0)  # the format is checked before anything else, like a schema check
    with config_lock(vmid):
        conf = store.load(vmid)
        store.check_lock(conf)
        if digest is not None and digest != conf.digest:
            raise VerifyError(DIGEST_MISMATCH)
        mp = _mountpoint(conf, disk)
        fmt = volume_format(mp.volume)
        sid = parse_volume_id(mp.volume)[0]
        if fmt == "subvol" and get_storage(sid).type_name == "dir":
            raise StorageError("can't resize this image format")
        current = _current_size(mp, fmt)
        target = new_size(size, current)
        if _repeats_interrupted(size, mp.size, current):
            target = current
        if target < current:
            raise StorageError("unable to shrink disk size")
        running = lxcapi.is_running(vmid)
        if target == current:
            # a resize killed after growing the volume: the same command finishes it
            grow_fs = fmt == "raw" and _fs_short(mp.volume)
            if not grow_fs and (mp.size is None or mp.size >= current):
                raise StorageError("disk is already at specified size")
            log(f"finishing an interrupted resize of {disk} to {human_size(target)}")
        else:
            if fmt == "raw":
                _check_room(mp.volume, target - current)
            resize_volume(mp.volume, target)
            grow_fs = fmt == "raw"
        # the config names the new size only once volume and file system have it: a kill
        # before the save leaves the old size there, which the next resize recognizes above
        if grow_fs:
            _grow_ext4(mp.volume, running, log)
        conf.set(disk, mp.replace(size=target))
        store.save(conf)
    return target


# resize2fs writes the new block groups' metadata into the sparse image: inode tables and
# bitmaps, a 256-byte inode per 16 KiB with mke2fs's defaults (128 bytes per 4 KiB for a small
# file system), so up to 1/32 of the growth, and the group descriptors besides
ROOM_SHARE, ROOM_SLACK = 32, 4 << 20


def _check_room(volid: str, growth: int) -> None:
    """Refuse to grow an image whose storage lacks the room its file system's growth writes:
    resize2fs stopped half-way on a full storage and left the ext4 damaged (bad bitmaps, an
    invalid resize inode), while the resize exited 0 with a warning and recorded the size."""
    need = growth // ROOM_SHARE + ROOM_SLACK
    try:
        st = os.statvfs(volume_path(volid).parent)
    except OSError:
        return  # the resize itself says what is wrong with the storage
    free = st.f_bavail * st.f_frsize
    if free < need:
        sid = parse_volume_id(volid)[0]
        raise StorageError(
            f"not enough free space on storage '{sid}' to grow the file system of '{volid}': "
            f"about {human_size(need)} needed, {human_size(free)} free"
        )


def _repeats_interrupted(size: str, recorded: int | None, current: int) -> bool:
    """Whether ``+N`` is the resize that was killed after growing the volume: the config, saved
    last, still has the size it was counted from. Counted from the grown volume, as Proxmox
    counts, the same command run again grew it a second time."""
    if not size.startswith("+") or recorded is None:
        return False
    wanted = new_size(size, recorded)
    # the volume is not the size asked for to the byte: images and quotas are whole KiB, and
    # resize2fs leaves an image a whole number of the file system's blocks; a growth too small
    # to tell from that rounding is never taken for one
    return wanted - recorded >= 2 * FS_BLOCK and abs(current - wanted) < FS_BLOCK


def _fs_short(volid: str) -> bool:
    """Whether the ext4 of a raw volume is smaller than its image (unknown: no)."""
    try:
        return not loop.ext4_fills_image(volume_path(volid))
    except CtkitError:
        return False


def _grow_ext4(volid: str, running: bool, log: Log) -> None:
    """Grow the file system to the image size; failures are only warned, as Proxmox does."""
    image = volume_path(volid)
    try:
        if running:
            _online_grow(image)
        else:
            _offline_grow(volid, image, log)
    except CtkitError as err:
        log(f"WARN: Failed to update the container's filesystem: {err}")


def _offline_grow(volid: str, image: Path, log: Log) -> None:
    if clear_interrupted_check(volid):
        log(f"cleared the mark of an interrupted e2fsck on '{volid}'")
    try:
        loop.offline_resize(image)
    except BaseException:
        # e2fsck killed with the command (Ctrl-C, TERM) leaves its mark: gone before we are
        with signals.held(), contextlib.suppress(CtkitError):
            clear_interrupted_check(volid)
        raise


def _online_grow(image: Path) -> None:
    devs = loop.devices_for(image)
    if not devs:
        raise CommandError(
            "internal error: CT running but mount point not attached to a loop device"
        )
    dev = devs[0]
    loop.set_capacity(dev)
    # the CT's mounts live in its monitor's namespace: resize2fs must see the file system
    # mounted to resize it online, so mount it once more in a private namespace of its own
    script = f"mount --make-rprivate / && mount {dev} /tmp && resize2fs {dev}"
    cmd.run(["unshare", "-m", "--", "sh", "-c", script])


# --- walking below a container root without following symlinks ------------------------------


@contextlib.contextmanager
def _mounted(conf: Config) -> Iterator[Path]:
    """A stopped CT's volumes at ``<lxcpath>/<vmid>/rootfs`` for the block."""
    target = paths.lxc_rootfs(conf.vmid)
    tree = mount_all(conf, target, root_ids=config_root_ids(conf))
    try:
        yield target
    finally:
        for problem in tree.unmount():
            _stderr(f"WARN: {problem}")


def _ct_root(vmid: int) -> Path | None:
    """``/proc/<init pid>/root`` of a running CT (the CT's own view of its mounts)."""
    pid = lxcapi.init_pid(vmid) if lxcapi.is_running(vmid) else None
    return Path(f"/proc/{pid}/root") if pid else None


# --- df -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DfRow:
    key: str
    volume: str
    path: str
    total: int
    used: int
    avail: int


def df(vmid: int) -> list[DfRow]:
    """Usage of rootfs and every mount point; a stopped CT is mounted under lock ``mounted``."""
    with config_lock(vmid):
        conf = store.load(vmid)
        root = _ct_root(vmid)
        if root is not None:
            return _df_rows(conf, root)
        store.set_lock(conf, MOUNTED_LOCK)
        store.save(conf)
        try:
            with _mounted(conf) as target:
                return _df_rows(conf, target)
        finally:
            store.drop_lock(vmid, MOUNTED_LOCK)


def _df_rows(conf: Config, root: Path) -> list[DfRow]:
    rows = []
    for mp in conf.mountpoints():
        fd = open_beneath(root, mp.path)
        try:
            st = os.fstatvfs(fd)
        finally:
            os.close(fd)
        total = st.f_blocks * st.f_frsize
        rows.append(
            DfRow(
                mp.key,
                mp.volume,
                mp.path,
                total,
                (st.f_blocks - st.f_bfree) * st.f_frsize,
                st.f_bavail * st.f_frsize,
            )
        )
    return rows


def human_size(size: float) -> str:
    """pct df's sizes: bytes below 1024, else one decimal and K/M/G/T."""
    if size < 1024:
        return str(int(size))
    for unit in "KMGT":
        size /= 1024
        if size < 1024 or unit == "T":
            return f"{size:.1f}{unit}"
    raise AssertionError("unreachable")


def render_df(rows: list[DfRow]) -> str:
    table = [["MP", "Volume", "Size", "Used", "Avail", "Use%", "Path"]]
    for r in rows:
        pct = 100.0 * r.used / r.total if r.total else 0.0
        table.append(
            [r.key, r.volume, human_size(r.total), human_size(r.used), human_size(r.avail),
             f"{pct:.1f}", r.path]
        )  # fmt: skip
    width = [max(len(row[i]) for row in table) for i in range(6)]
    out = []
    for row in table:
        cells = [row[0].ljust(width[0]), row[1].ljust(width[1])]
        cells += [row[i].rjust(width[i]) for i in range(2, 6)]
        out.append(" ".join([*cells, row[6]]) + "\n")
    return "".join(out)


# --- cpusets --------------------------------------------------------------------------------


def cpusets() -> dict[int, set[int]]:
    """The CPUs of every running CT (its cgroup's effective cpuset)."""
    result = {}
    for vmid in store.list_vmids():
        if not lxcapi.is_running(vmid):
            continue
        cpus = CGroup(vmid).cpuset_cpus()
        if cpus:
            result[vmid] = cpus
    return result


def render_cpusets(sets: dict[int, set[int]]) -> str:
    if not sets:
        return "no running containers\n"
    lines = {}
    for vmid, cpus in sets.items():
        line = ": " + "".join(
            " " + (str(i) if i in cpus else " " * len(str(i))) for i in range(max(cpus) + 1)
        )
        lines[str(vmid)] = line
    id_len = max(len(v) for v in lines)
    header = "-" * (max(len(v) for v in lines.values()) + id_len) + "\n"
    body = "".join(f"{vmid:>{id_len}}{lines[vmid]}\n" for vmid in sorted(lines))
    return header + body + header


# --- fstrim ---------------------------------------------------------------------------------

FITRIM = 0xC0185879  # _IOWR('X', 121, struct fstrim_range)


def trim(fd: int) -> int:
    """FITRIM on the file system of ``fd`` (a directory opened for reading); bytes trimmed."""
    arg = bytearray(struct.pack("QQQ", 0, 2**64 - 1, 0))
    fcntl.ioctl(fd, FITRIM, arg)
    return int(struct.unpack("QQQ", arg)[1])


def util_linux_size(nbytes: int) -> str:
    """``fstrim -v``'s sizes: ``3.9 GiB``, ``512 B``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    exp = 0
    value = float(nbytes)
    while value >= 1024 and exp < len(units) - 1:
        value /= 1024
        exp += 1
    if exp == 0:
        return f"{nbytes} B"
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {units[exp]}"


def fstrim(vmid: int, *, ignore_mountpoints: bool = False, log: Log = print) -> None:
    """Trim rootfs and every volume mount point (not bind, not read-only) under lock fstrim."""
    with config_lock(vmid):
        conf = store.load(vmid)
        if conf.is_template:
            raise StateError(
                f"cannot trim CT {vmid} - it is a template (its volumes stay as they are)"
            )
        store.set_lock(conf, "fstrim")
        store.save(conf)
    try:
        root = _ct_root(vmid)
        if root is not None:
            _trim_all(conf, root, ignore_mountpoints, log)
        else:
            with _mounted(conf) as target:
                _trim_all(conf, target, ignore_mountpoints, log)
    finally:
        with config_lock(vmid):
            store.drop_lock(vmid, "fstrim")


def _trim_all(conf: Config, root: Path, ignore_mountpoints: bool, log: Log) -> None:
    for mp in conf.mountpoints():
        if mp.type == "bind" or mp.ro:
            continue
        if ignore_mountpoints and mp.key != "rootfs":
            continue
        shown = f"{root}{mp.path}"
        try:
            fd = open_beneath(root, mp.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                done = trim(fd)
            finally:
                os.close(fd)
        except (OSError, CtkitError) as err:
            text = err.strerror if isinstance(err, OSError) else str(err)
            log(f"fstrim: {shown}: {text}")
            continue
        log(f"{shown}: {util_linux_size(done)} ({done} bytes) trimmed")


# --- push / pull ----------------------------------------------------------------------------

COPY_CHUNK = 1 << 20
MAX_ID_FILE = 16 << 20  # of a container's /etc/passwd or /etc/group read for a name
MAX_PERMS = 0o7777
_ID_PARAMS = {"uid": "user", "gid": "group"}


def parse_perms(text: str) -> int:
    """Octal by default, ``0x`` for hex (Proxmox: ``"0" . perms`` through strtoul)."""
    value = text if text.startswith("0") else "0" + text
    try:
        if value[:2].lower() == "0x":
            mode = int(value[2:], 16)
        else:
            mode = int(value, 8)
    except ValueError:
        raise CtkitError(f"invalid mode: '{value}'") from None
    if mode > MAX_PERMS:
        raise ParamError({"perms": f"mode '{value}' out of range (0..0{MAX_PERMS:o})"})
    return mode


def _numeric_id(text: str, kind: str) -> int | None:
    """``text`` as a uid/gid if it is a number (else None: a name); one out of range is a bad
    parameter, refused before fchown would overflow on it."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = ascii_int(text)  # None: more digits than any id has
    if value is None or value > MAX_ID:
        raise ParamError({_ID_PARAMS[kind]: f"{kind} '{text}' out of range (0..{MAX_ID})"})
    return value


def check_owner(owner: Owner) -> None:
    """Refuse bad ``--user``/``--group`` ids and ``--perms`` before any file is opened (push
    opens its file in a child, whose errors come back as plain messages)."""
    for text, kind in ((owner.user, "uid"), (owner.group, "gid")):
        if text is not None:
            _numeric_id(text, kind)
    if owner.perms is not None:
        parse_perms(owner.perms)


def _lookup_id(name: str | None, db: Path | None, kind: str) -> int | None:
    """A numeric id, or a name looked up in ``db`` (a passwd/group file) or the host's NSS."""
    if name is None:
        return None
    if (value := _numeric_id(name, kind)) is not None:
        return value
    found: int | None = None
    if db is None:
        with contextlib.suppress(KeyError):
            found = pwd.getpwnam(name).pw_uid if kind == "uid" else grp.getgrnam(name).gr_gid
    else:
        found = _id_from_file(db, name)
    if found is None:
        raise CtkitError(f"failed to get {kind} for: {name}")
    return found


def _id_from_file(db: Path, name: str) -> int | None:
    """The id of ``name`` in an ``/etc/passwd``-style file (third field). The container owns
    the file: only a regular one is read, opened without waiting, and only so much of it."""
    try:
        found = read_regular(db, MAX_ID_FILE)
    except OSError:
        return None
    if found is None:
        return None
    text = found[0][:MAX_ID_FILE].decode("utf-8", errors="replace")
    for line in text.split("\n"):
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isascii() and fields[2].isdigit():
            value = int(fields[2])
            return value if value <= MAX_ID else None
    return None


@dataclass(frozen=True)
class Owner:
    """``--user``, ``--group`` and ``--perms`` as given (names are resolved where they apply)."""

    user: str | None = None
    group: str | None = None
    perms: str | None = None


def create_file(path: str, owner: Owner, *, names_from: Path | None) -> NewFile:
    """The file that replaces ``path`` once it is complete (:class:`NewFile`).

    Proxmox creates a new file exclusively and truncates an existing one, so a copy that fails
    (a full disk) or is killed half-way leaves the old content lost and the new one cut short.
    Here the new content goes to a file beside it, renamed over ``path`` only when complete.
    An existing destination must be a regular file (a symlink to one is followed); its mode
    and owner carry over unless given. Names resolve in ``names_from`` (``<root>/etc``), else
    on the host. Every value is checked before anything is created.
    """
    uid = _lookup_id(owner.user, names_from and names_from / "passwd", "uid")
    gid = _lookup_id(owner.group, names_from and names_from / "group", "gid")
    mode = parse_perms(owner.perms) if owner.perms is not None else None
    target, old = _destination(path)
    _remove_dead_temps(target)
    tmp = f"{target.parent}/{_temp_prefix(target.name)}{os.getpid()}"
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    carried = mode is None
    if mode is None:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~umask
    if old is not None:
        uid = old.st_uid if uid is None else uid
        gid = old.st_gid if gid is None else gid
        if carried and (uid, gid) != (old.st_uid, old.st_gid):
            # as a chown does: a new owner never inherits set-id bits nobody gave it
            mode &= ~(stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0))
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as err:
        raise CtkitError(f"failed to create file: {path}: {err.strerror}") from None
    return NewFile(str(target), tmp, fd, mode, uid, gid)


TEMP_TAG = "ctkit-copy"
NAME_MAX = 255
PID_DIGITS = 7  # pid_max is at most 2**22


def _temp_prefix(name: str) -> str:
    """``.<name>.ctkit-copy-``, with ``name`` cut short where a long one would leave no room
    for the pid within a file name's 255 bytes."""
    room = NAME_MAX - len(f"..{TEMP_TAG}-") - PID_DIGITS
    return f".{os.fsdecode(os.fsencode(name)[:room])}.{TEMP_TAG}-"


@dataclass
class NewFile:
    """New content for ``path``, written to ``tmp`` beside it; owner and mode are set once it
    is written (a write clears set-id bits, and a chown does too)."""

    path: str
    tmp: str
    fd: int
    mode: int
    uid: int | None = None
    gid: int | None = None

    def commit(self) -> None:
        """The complete content, on disk, under its name (the old one's place, atomically)."""
        try:
            if self.uid is not None or self.gid is not None:
                uid, gid = (-1 if i is None else i for i in (self.uid, self.gid))
                os.fchown(self.fd, uid, gid)
            os.fchmod(self.fd, self.mode)
        except BaseException as err:
            self.discard()
            if isinstance(err, OSError):
                raise CtkitError(f"failed to change file owner: {err.strerror}") from None
            raise
        try:
            # through the descriptor, never the name: in a container its own processes may
            # have put anything there meanwhile (opening a FIFO they put there never returned)
            os.fsync(self.fd)
        except BaseException as err:
            self.discard()
            if isinstance(err, OSError):
                raise CtkitError(f"failed to write {self.path}: {err.strerror}") from None
            raise
        try:
            os.close(self.fd)
            os.replace(self.tmp, self.path)
            fsync_dir(Path(self.path).parent)
        except BaseException as err:
            _unlink_quietly(self.tmp)
            if isinstance(err, OSError):
                raise CtkitError(f"failed to write {self.path}: {err.strerror}") from None
            raise

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        _unlink_quietly(self.tmp)


def _destination(path: str) -> tuple[Path, os.stat_result | None]:
    """The file to replace (a symlink's target, which must exist: Proxmox opens a dangling
    link without creating it) and its status; None for a new file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        # Path() would make '/x/' or '/x/.' the new file '/x': creating it names a directory
        if path.endswith("/"):
            raise CtkitError(f"failed to create file: {path}: Is a directory") from None
        if os.path.basename(path) in ("", ".", ".."):
            raise CtkitError(f"failed to create file: {path}: No such file or directory") from None
        return Path(path), None
    except OSError as err:
        raise CtkitError(f"failed to create file: {path}: {err.strerror}") from None
    target = Path(path)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = Path(os.path.realpath(path, strict=True))
            st = os.stat(target)
        except OSError as err:
            raise CtkitError(f"failed to create file: {path}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CtkitError(f"failed to create file: {path}: not a regular file")
    return target, st


def _remove_dead_temps(target: Path) -> None:
    """A copy killed half-way left its temp file beside the destination; the next copy to it
    removes every one whose process is gone."""
    pattern = re.compile(re.escape(_temp_prefix(target.name)) + r"([0-9]+)")
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            m = pattern.fullmatch(entry.name)
            if m and entry.is_file(follow_symlinks=False) and not pid_alive(int(m.group(1))):
                _unlink_quietly(entry.path)


def _unlink_quietly(path: str | Path) -> None:
    """Remove a file this command created and then failed to fill."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _copy(src: int, dst: int) -> None:
    """Copy ``src`` to the new file ``dst``, keeping its holes: a container's sparse file (3 GiB
    of nothing in a few KiB) was written out in full, and a pull filled the host's disk."""
    size = os.fstat(src).st_size
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:
                break  # only a hole is left
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        os.lseek(src, start, os.SEEK_SET)
        os.lseek(dst, start, os.SEEK_SET)
        _copy_range(src, dst, end - start)
        offset = end
    os.ftruncate(dst, size)


def _copy_range(src: int, dst: int, length: int) -> None:
    while length > 0 and (chunk := os.read(src, min(COPY_CHUNK, length))):
        length -= len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


def _running_pid(vmid: int, message: str) -> tuple[Config, int]:
    with config_lock(vmid):
        conf = store.load(vmid)
        pid = lxcapi.init_pid(vmid) if lxcapi.is_running(vmid) else None
    if pid is None:
        raise StateError(message)
    return conf, pid


def _open_source(source: Path) -> int:
    """The host file to push: a regular file only (a FIFO waited for ever, /dev/zero filled
    the container's disk), opened without waiting."""
    try:
        src = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:  # exit 3, as every file that does not exist
        raise NotFoundError(f"failed to open {source} for reading") from None
    except OSError:
        raise CtkitError(f"failed to open {source} for reading") from None
    if not stat.S_ISREG(os.fstat(src).st_mode):
        os.close(src)
        raise CtkitError(f"failed to open {source} for reading: not a regular file")
    os.set_blocking(src, True)
    return src


def _id_map(pid: int, kind: str) -> list[tuple[int, int, int]]:
    """The user namespace's ``uid_map``/``gid_map`` of ``pid``: (inside, outside, count)."""
    try:
        text = Path(f"/proc/{pid}/{kind}_map").read_text(encoding="ascii")
    except (OSError, ValueError):
        return []
    return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in text.splitlines())]


def _unmapped_owner(dest: str, owner: Owner, maps: dict[str, list[tuple[int, int, int]]]) -> str:
    """What of an existing ``dest`` (seen with the host's ids) would carry over an owner the
    container does not map ("" if nothing): inside it shows as the overflow id, and the copy
    would be given to the container's nobody."""
    try:
        st = os.stat(dest)
    except OSError:
        return ""
    if not stat.S_ISREG(st.st_mode):
        return ""  # refused for that
    for kind, given, value in (("uid", owner.user, st.st_uid), ("gid", owner.group, st.st_gid)):
        ranges = maps[kind]  # unreadable: unknown, not refused
        if given is None and ranges and not any(out <= value < out + n for _i, out, n in ranges):
            return f"{kind} {value}"
    return ""


def push(vmid: int, source: Path, dest: str, owner: Owner = Owner()) -> None:
    """Copy a host file into a running CT; user/group names are the container's."""
    check_owner(owner)
    conf, pid = _running_pid(vmid, "can only push files to a running CT")
    maps = {kind: _id_map(pid, kind) for kind in ("uid", "gid")}
    src = _open_source(source)
    unmapped: list[str] = []

    def look() -> None:  # as the host's root, in the container's mount namespace only
        unmapped.append(_unmapped_owner(dest, owner, maps))

    def work() -> None:
        if unmapped and unmapped[0]:
            raise CtkitError(
                f"failed to create file: {dest}: its owner ({unmapped[0]}) is not mapped in"
                " the container"
            )
        new = create_file(dest, owner, names_from=Path("/etc"))
        try:
            _copy(src, new.fd)
        except BaseException as err:
            new.discard()
            if isinstance(err, OSError):
                raise CtkitError(f"failed to copy {source} to {dest}: {err.strerror}") from None
            raise
        new.commit()

    userns = bool(conf.unprivileged)
    try:
        in_container(pid, work, userns=userns, host_view=look if userns else None)
    finally:
        os.close(src)


def pull(vmid: int, path: str, dest: Path, owner: Owner = Owner()) -> None:
    """Copy a regular file out of a running CT; user/group names are the host's.

    The file is opened with the rights of the container's root (in its user namespace for an
    unprivileged CT), so a link the container made never reaches what only the host may read;
    kernel interfaces (procfs, sysfs, ...) are refused even where that root may open them."""
    check_owner(owner)
    conf, pid = _running_pid(vmid, "can only pull files from a running VM")
    new = create_file(str(dest), owner, names_from=None)

    def work() -> None:
        try:
            src = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as err:
            kind = NotFoundError if isinstance(err, FileNotFoundError) else CtkitError
            raise kind(f"failed to open {path}: {err.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise CtkitError(f"failed to open {path}: not a regular file")
            if (fs := pseudo_fs_name(src)) is not None:
                raise CtkitError(f"failed to open {path}: on the kernel's {fs} file system")
            os.set_blocking(src, True)
            _copy(src, new.fd)
        finally:
            os.close(src)

    try:
        in_container(pid, work, userns=bool(conf.unprivileged))
    except BaseException:
        new.discard()
        raise
    new.commit()
