"""File access inside the container root: marker blocks, ``.pve-ignore.*`` files, safe writes.

Every method takes container paths and is meant to run in a child process that has
``chroot()``-ed into the root file system (see ``chroot.py``), so a symlink in the container can
never point outside it. Writes go to a temp file in the same directory followed by a rename, so a
symlinked target is replaced by a regular file instead of being followed.
"""

from __future__ import annotations

import contextlib
import enum
import os
import posixpath
import re
import stat

from shared.atomic import atomic_open
from shared.errors import ConfigError
from shared.formats.digits import ascii_int
from shared.regularfile import read_regular

MAX_READ = 16 << 20  # a container file guest setup reads (hosts, interfaces, passwd, ...)
ID_RANGE = 65536  # the ids of an unprivileged container from its root's up (the default map)
BLOCK_BEGIN = "# --- BEGIN PVE ---"
BLOCK_END = "# --- END PVE ---"
BEGIN_RE = re.compile(r"#\s*---\s*BEGIN\s*PVE")
END_RE = re.compile(r"#\s*---\s*END\s*PVE", re.IGNORECASE)


class Delete(enum.Enum):
    """Result of :func:`edit_block` when the file should be removed."""

    FILE = "delete"


def perl_lines(text: str) -> list[str]:
    """Lines as Perl's ``split(/\\n/, ...)`` yields them: trailing empty lines dropped."""
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def edit_block(
    old: str | None, data: str, *, mode: str = "append", delete: bool = False
) -> str | Delete | None:
    """New text for a file holding a PVE marker block, ``None`` = leave the file alone.

    ``mode`` says where a block goes when the file has none: ``append``, ``prepend`` or
    ``replace`` (the whole file becomes the block). With ``delete``, a file that would consist
    of an empty block only is removed instead.
    """
    if data and not data.endswith("\n"):
        data += "\n"
    block = f"{BLOCK_BEGIN}\n{data}{BLOCK_END}\n"
    if old is None:
        return block if data else None
    lines = perl_lines(old)
    begin = end = None
    for i, line in enumerate(lines):
        if begin is None and BEGIN_RE.match(line):
            begin = i
        elif begin is not None and END_RE.match(line):
            end = i
            break
    if begin is not None and end is not None:
        if not data and begin == 0 and end == len(lines) - 1:
            return Delete.FILE if delete else None
        lines[begin : end + 1] = [block[:-1]]
        return "\n".join(lines) + "\n"
    if not data:
        return None
    content = "\n".join(lines)
    # Unlike Proxmox, an empty file gets no stray blank line before or after the block.
    content = content + "\n" if content else ""
    if mode == "replace":
        return block
    if mode == "prepend":
        return block + content
    return content + block


_BEGIN_LINE = re.compile(r"^[ \t]*" + re.escape(BLOCK_BEGIN), re.MULTILINE)
_END_LINE = re.compile(r"^[ \t]*" + re.escape(BLOCK_END), re.MULTILINE)


def remove_pve_sections(text: str) -> str:
    """The text without the span from the first begin marker to the end of the line of the
    last end marker after it. Found in two linear scans: one pattern spanning both markers
    took quadratic time on a file of many begin markers (a container's /etc/hosts, read at
    every start)."""
    begin = _BEGIN_LINE.search(text)
    if begin is None:
        return text
    last = None
    for match in _END_LINE.finditer(text, begin.end()):
        last = match
    if last is None:
        return text
    eol = text.find("\n", last.end())
    return text[: begin.start()] + (text[eol:] if eol >= 0 else "")


class CtFiles:
    """File operations on the (chrooted) container root; created entries get the CT's root ids."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid = uid
        self.gid = gid

    # --- queries ---------------------------------------------------------------------------

    def ignored(self, path: str) -> bool:
        directory, name = posixpath.split(path)
        return os.path.isfile(posixpath.join(directory or "/", f".pve-ignore.{name}"))

    def exists(self, path: str) -> bool:
        """A regular file (symlinks followed, inside the root)."""
        return os.path.isfile(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_symlink(self, path: str) -> bool:
        return os.path.islink(path)

    def lexists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_executable(self, path: str) -> bool:
        return os.path.isfile(path) and os.access(path, os.X_OK)

    def readlink(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def read(self, path: str) -> str | None:
        """Content of a regular file, ``None`` when absent or not a regular file. It is opened
        without waiting (a FIFO swapped in after a check would block, the config lock held)
        and checked on the open file. This process is the host's root, the container's root
        owns these files: one too large for a config file is refused, and so is one the
        container's root could not read itself (a symlink into a bind mount point would
        otherwise copy a host file into the container)."""
        found = read_regular(path, MAX_READ)
        if found is None:
            return None
        data, st = found
        if not self._readable_by_ct_root(st):
            raise ConfigError(f"'{path}' is not readable by the container's root - not touched")
        if len(data) > MAX_READ:
            raise ConfigError(f"'{path}' is larger than {MAX_READ >> 20} MiB - not touched")
        return data.decode("utf-8", "surrogateescape")

    def _changeable(self, path: str) -> None:
        """Refuse a change in a directory the container's root could not change itself. This
        process is the host's root: ``/etc/systemd`` made a symlink to a bind mount point had
        it replace, create (owned by the container) and remove files in a host directory the
        container may only read. An unprivileged container's root changes the directories of
        its own ids, and one anyone may write that is not sticky (whose entries are their
        owners' alone)."""
        if self.uid == 0:
            return  # a privileged container's root is the host's
        parent = posixpath.dirname(path) or "/"
        try:
            st = os.stat(parent)  # symlinks resolved as the change will resolve them
        except OSError:
            return  # nothing there: the change itself fails
        own = self.uid <= st.st_uid < self.uid + ID_RANGE
        if not (own or (st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX)):
            raise ConfigError(
                f"'{parent}' is not writable by the container's root - '{path}' not touched"
            )

    def _readable_by_ct_root(self, st: os.stat_result) -> bool:
        """An unprivileged container's root reads the files of its own ids (it may override
        their modes) and, of a host id, only what anyone may read."""
        if self.uid == 0:
            return True  # a privileged container's root is the host's
        own = self.uid <= st.st_uid < self.uid + ID_RANGE
        return own or bool(st.st_mode & stat.S_IROTH)

    def host_gid(self, group: str) -> int | None:
        """The host gid of the container's group ``group`` (from its /etc/group, ids mapped as
        the container's root's are); None when there is no such group in the mapped range."""
        for line in (self.read("/etc/group") or "").splitlines():
            fields = line.split(":")
            gid = ascii_int(fields[2]) if len(fields) > 2 and fields[0] == group else None
            if gid is not None:
                return self.gid + gid if gid < ID_RANGE else None
        return None

    def read_firstline(self, path: str) -> str | None:
        text = self.read(path)
        if text is None:
            return None
        return text.split("\n", 1)[0]

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    # --- changes -----------------------------------------------------------------------------

    def write(
        self,
        path: str,
        data: str,
        mode: int | None = None,
        *,
        new_mode: int = 0o644,
        new_gid: int | None = None,
    ) -> None:
        """Replace ``path`` atomically; an existing file keeps its owner (and mode if not given).
        ``new_mode``/``new_gid`` are for a new file, or one replacing a symlink or the like,
        whose mode and group say nothing (a secret must not become world-readable)."""
        if self.ignored(path):
            return
        uid, gid, old_mode = self.uid, self.gid if new_gid is None else new_gid, new_mode
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                uid, gid, old_mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode) & 0o777
        self.make_path(posixpath.dirname(path) or "/")
        self._changeable(path)
        try:
            with atomic_open(path, mode=old_mode if mode is None else mode, uid=uid, gid=gid) as fh:
                fh.write(data.encode("utf-8", "surrogateescape"))
        except OSError as err:
            raise ConfigError(f"unable to write '{path}' - {err.strerror or err}") from None

    def modify(
        self,
        path: str,
        data: str,
        *,
        mode: str = "append",
        delete: bool = False,
        perms: int | None = None,
    ) -> None:
        """Update the PVE marker block of ``path`` (see :func:`edit_block`)."""
        if self.ignored(path):
            return
        new = edit_block(self.read(path), data, mode=mode, delete=delete)
        if new is Delete.FILE:
            self.unlink(path)
        elif new is not None:
            self.write(path, new, perms)

    def unlink(self, path: str) -> None:
        if self.ignored(path) or not os.path.lexists(path):
            return
        if os.path.isdir(path) and not os.path.islink(path):
            return
        self._changeable(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def rename(self, src: str, dst: str) -> None:
        if self.ignored(dst):
            return
        self._changeable(src)
        self._changeable(dst)
        os.rename(src, dst)

    def symlink(self, target: str, path: str) -> bool:
        """Create a symlink; like Proxmox, an existing entry or a missing directory is no error."""
        if self.ignored(path):
            return False
        self._changeable(path)
        try:
            os.symlink(target, path)
        except OSError:
            return False
        os.lchown(path, self.uid, self.gid)
        return True

    def replace_symlink(self, target: str, path: str) -> None:
        """Point ``path`` at ``target`` atomically (temp link, then rename)."""
        if self.ignored(path):
            return
        self._changeable(path)
        tmp = f"{path}.{os.getpid()}.new.tmplink"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.lchown(tmp, self.uid, self.gid)
        os.rename(tmp, path)

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        self._changeable(path)
        try:
            os.mkdir(path, mode)
        except OSError:
            return False
        os.chmod(path, mode)
        os.chown(path, self.uid, self.gid)
        return True

    def make_path(self, path: str, mode: int = 0o755) -> None:
        """``mkdir -p`` where every directory created gets the CT's root ids."""
        current = "/"
        for part in [p for p in path.split("/") if p]:
            current = posixpath.join(current, part)
            if os.path.isdir(current):
                continue
            if not self.mkdir(current, mode) and not os.path.isdir(current):
                raise ConfigError(f"unable to create directory '{current}'")
