"""Opening files and directories under a known name without following a planted symlink.

A name that ctkit writes to again and again (a backup's ``.dat``, its temp dir, a log copy) is
predictable, so someone may place a symlink there that points at a host file: writing through it
would overwrite that file as root. These helpers refuse anything but a regular file (or a real
directory) under the name, with one line saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

from .atomic import temp_name
from .errors import CtkitError
from .toolenv import tool_env

WRITE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# a directory opened to read or to walk from, never through a symlink put in its place
READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: Path | str, what: str) -> CtkitError:
    return CtkitError(f"refusing to use '{path}': {what}")


def open_for_write(path: Path | str, mode: int = 0o644, *, truncate: bool = True) -> int:
    """A write descriptor on the regular file ``path`` (created if missing); a symlink, FIFO,
    device or directory under that name is refused."""
    flags = WRITE | (os.O_TRUNC if truncate else 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as err:
        if os.path.islink(path):
            raise _refuse(path, "it is a symbolic link") from None
        raise CtkitError(f"unable to open '{path}' for writing: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refuse(path, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def copy_file(src: Path | str, dest: Path | str) -> None:
    """Copy ``src`` to ``dest``: into a hidden file beside it, renamed to ``dest`` once whole (a
    copy cut short by a full disk left an empty file under the final name, which retention
    never removed). A symlink at ``dest`` is refused, and one planted after that check is
    replaced by the rename, never written through."""
    dest = Path(dest)
    if os.path.islink(dest):
        raise _refuse(dest, "it is a symbolic link")
    tmp = temp_name(dest.parent, dest.name)
    fd = open_for_write(tmp)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_tree(
    path: str | Path, *, dir_fd: int | None = None, ignore_errors: bool = False
) -> None:
    """Remove ``path`` (relative to ``dir_fd`` if given) and all below it, however deep.

    ``shutil.rmtree`` recurses once per directory level and raises RecursionError below about
    1000 levels, even with ``ignore_errors``: a container's root can make such a tree, and its
    volume could then never be freed (``pct destroy`` left it with ``lock: destroyed``). What
    it cannot walk, GNU rm finishes: it walks any depth, never follows a symlink and never
    crosses into another file system (it runs in a session of its own, so that a Ctrl-C meant
    for us does not cut it short). In-process first: an rm per call cost milliseconds on
    every backup. A missing path is no error; a failure raises OSError unless
    ``ignore_errors``."""
    try:
        shutil.rmtree(path, ignore_errors=ignore_errors, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except RecursionError:
        pass
    _rm_rf(path, dir_fd, ignore_errors)


def _rm_rf(path: str | Path, dir_fd: int | None, ignore_errors: bool) -> None:
    where = os.fspath(path) if dir_fd is None else f"/proc/self/fd/{dir_fd}/{os.fspath(path)}"
    proc = subprocess.run(
        ["rm", "-rf", "--one-file-system", "--", where],
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=() if dir_fd is None else (dir_fd,),
        start_new_session=True,
        check=False,
    )
    if proc.returncode != 0 and not ignore_errors:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"rm exited with {proc.returncode}"
        raise OSError(errno.ENOTEMPTY, why, os.fspath(path))


def fresh_dir(path: Path, mode: int = 0o700) -> None:
    """An empty directory ``path``: a leftover real directory is emptied first, a symlink or
    other file under the name is refused (never followed, never deleted through)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        kind = "it is a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise _refuse(path, kind)
    try:
        if st is not None:
            remove_tree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, mode)
    except OSError as err:  # a read-only, full or pseudo file system (--tmpdir /proc)
        raise CtkitError(f"unable to create directory '{path}' - {err.strerror}") from None
