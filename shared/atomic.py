"""Atomic file writes: temp file in the same directory, fsync, rename.

A crash at any instant leaves either the old file or the new one under the final name. A
writer killed mid-write leaves its hidden temp file beside it: the next write into that
directory through :func:`write_bytes` removes it (:func:`sweep`). A write that fails (a full or
read-only file system) leaves the old file and raises :class:`WriteError`, one line for the user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import CtkitError

# ``.<name>.<pid>-<random>.tmp``: the pid says whether its writer may still live
_TEMP_RE = re.compile(r"\..+\.([1-9][0-9]{0,9})-[0-9a-f]{8}\.tmp", re.DOTALL)
_swept: set[str] = set()


class WriteError(CtkitError, OSError):
    """A file could not be written (a full or read-only file system). An ``OSError`` too, with
    the cause's errno: what handled the failed write before still does."""

    def __init__(self, message: str, cause: OSError) -> None:
        super().__init__(message)
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, cause.filename


def write_error(path: Path | str, err: OSError) -> WriteError:
    return WriteError(f"unable to write '{path}': {err.strerror or err}", err)


def fsync_dir(path: Path) -> None:
    _fsync(path, os.O_DIRECTORY)


def fsync_file(path: Path) -> None:
    """Whatever was written to ``path`` through any descriptor (a loop device's, say) is on
    disk, or the write error is raised."""
    _fsync(path, 0)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: Path | str,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    tmp_name: str | None = None,
    durable: bool = True,
) -> Iterator[IO[bytes]]:
    """Yield a binary file whose content replaces ``path`` when the block ends without error.

    ``mode`` defaults to the existing file's mode (else 0644). ``tmp_name`` fixes the temporary
    name (e.g. vzdump's ``.dat``); by default a unique hidden name is used. ``durable=False``
    skips the fsyncs: the replacement is still atomic for any process, killed at any instant,
    but not across a crash of the machine (for records that a reboot makes void anyway).
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    if tmp_name is None:
        fd, tmp = _unique_temp(directory, path.name)
    else:
        tmp = str(directory / tmp_name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    # open (and so locked, see _unique_temp) until the temp file has its final name
    with os.fdopen(fd, "wb") as fh:
        try:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(fh.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            if durable:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            if durable:
                fsync_dir(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def temp_name(directory: Path, name: str) -> Path:
    """A hidden ``.<name>.<pid>-<random>.tmp`` in ``directory``: the name :func:`sweep` knows
    (by its pid) for a temp file whose writer is gone."""
    return directory / f".{name}.{os.getpid()}-{os.urandom(4).hex()}.tmp"


def _unique_temp(directory: Path, name: str) -> tuple[int, str]:
    """A new hidden ``.<name>.<pid>-<random>.tmp`` (as ``tempfile.mkstemp`` makes it, mode
    0600, without the cost of importing tempfile and random at every command's start), locked
    (flock) by its open descriptor. Between its creation and the lock only its pid, alive,
    tells that it is not stale."""
    for _ in range(100):
        tmp = str(temp_name(directory, name))
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):  # a file system without flock: the pid alone tells
            fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no unique temporary name", str(directory))


def sweep(directory: Path) -> None:
    """Remove the temp files that writers killed mid-write left in ``directory``: those whose
    process is gone and that nobody holds locked. Once per directory and process (a command
    saves the same config several times). Only for directories of the host's own state: a
    container's files are its own."""
    key = os.fspath(directory)
    if key in _swept:
        return
    _swept.add(key)
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(".tmp")]
    except OSError:  # not there yet: nothing left in it
        return
    for name in names:
        match = _TEMP_RE.fullmatch(name)
        if match is not None and not pid_alive(int(match[1])):
            _remove_unheld(os.path.join(key, name))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (the writer a temp file names)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists (another user's)
        return True
    return True


def _remove_unheld(path: str) -> None:
    """Unlink ``path`` if it is a regular file that no descriptor holds locked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone meanwhile, or a symlink: not one of ours
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except OSError:  # held: a writer in another pid namespace lives
        pass
    finally:
        os.close(fd)


def write_bytes(
    path: Path | str, data: bytes, mode: int | None = None, *, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` (a file of the host's own state: see :func:`sweep`)."""
    try:
        sweep(Path(path).parent)
        with atomic_open(path, mode=mode, durable=durable) as fh:
            fh.write(data)
    except WriteError:
        raise
    except OSError as err:
        raise write_error(path, err) from None


def write_text(path: Path | str, text: str, mode: int | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode)


def commit_file(tmp: Path | str, final: Path | str, *, overwrite: bool = True) -> None:
    """Rename a finished temp file onto its final name (same directory) after fsyncing it.

    With ``overwrite=False`` an existing ``final`` is never replaced (FileExistsError): the
    file is linked under its final name, which fails atomically when the name is taken.
    """
    tmp, final = Path(tmp), Path(final)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if overwrite:
        os.replace(tmp, final)
    else:
        _link_no_replace(tmp, final)
    fsync_dir(final.parent)


def _link_no_replace(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # a file system without hard links: the check and the rename are two steps here
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)
