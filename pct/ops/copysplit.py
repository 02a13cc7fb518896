"""A large tree copied by several ``cp -a`` processes at once (full clones, move-volume).

One ``cp`` copies file after file in one thread. With the data in the page cache (a template
just unpacked, a container just stopped) that is the kernel copying memory on one core: 1000
MiB of 4 MiB files took 0.45 s with one ``cp -a`` and 0.28 s with two on this 2-core VM. So a
tree of at least :data:`MIN_BYTES` (or :data:`MIN_ENTRIES` entries) is split into units - whole
subtrees and single entries - that the workers copy with ``cp -a --parents``, each unit whole
and by the same tool as before. What ``cp`` would no longer do itself is done here:

* directories are split down to units of about 1/8 of a worker's share; a split directory is
  made here before the workers start and gets its owner, mode, extended attributes (ACLs
  among them) and times from its source after they end, as ``cp -a`` sets a directory's after
  its content;
* ``cp`` keeps hard links only between the names one process copies: units that share an inode
  go to the same worker, in one invocation.

Anything the split cannot promise (no second CPU, a tree too small or too big to index, units
that do not fit one command line) leaves the copy to one ``cp -a`` as before.
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import CommandError, StorageError
from shared.parentdeath import tied_to_parent
from shared.safefile import READ_DIR
from shared.toolenv import tool_env
from shared.treescan import TreeIndex

MIN_BYTES = 256 << 20
MIN_ENTRIES = 20_000
MAX_ENTRIES = 500_000  # a bigger tree is not indexed: one cp, as before
MAX_WORKERS = 4
UNITS_PER_WORKER = 8
MAX_ARGV_BYTES = 1 << 20  # well below the kernel's limit for one command line
# both ways of copying: one file system (-x), holes kept, reflinks where the file system can
CP_FLAGS = ["-a", "-x", "--sparse=auto", "--reflink=auto"]
CP_UNITS = ["cp", *CP_FLAGS, "--parents"]  # each unit at its relative path below the target


@dataclass
class Split:
    """The copy's plan: directories made here (parents first, ``""`` the root) and each
    worker's units (paths relative to the source)."""

    dirs: list[str] = field(default_factory=list)
    workers: list[list[str]] = field(default_factory=list)


def workers_for(cpus: int | None = None) -> int:
    return min(MAX_WORKERS, cpus if cpus is not None else os.cpu_count() or 1)


def worth_splitting(index: TreeIndex) -> bool:
    return index.allocated >= MIN_BYTES or index.entries >= MIN_ENTRIES


def plan(index: TreeIndex, workers: int) -> Split | None:
    """Units for ``workers`` processes, or None when the tree does not split usefully."""
    if workers < 2:
        return None
    target = max(index.allocated // (workers * UNITS_PER_WORKER), 1)
    split = Split(dirs=[""])
    units: list[tuple[str, int]] = []
    for rel in split.dirs:  # grows as directories are split: parents first
        for name, is_dir, size in index.dirs.get(rel, []):
            path = f"{rel}/{name}" if rel else name
            if is_dir and size > target and index.dirs.get(path):
                split.dirs.append(path)
            else:
                units.append((path, size))
    groups = _link_groups(units, index.linked)
    if groups is None or len(groups) < 2:
        return None
    loads = [0] * workers
    split.workers = [[] for _ in range(workers)]
    for paths, size in sorted(groups, key=lambda g: -g[1]):
        least = loads.index(min(loads))
        split.workers[least] += paths
        loads[least] += size
    split.workers = [w for w in split.workers if w]
    if any(sum(len(os.fsencode(p)) + 1 for p in w) > MAX_ARGV_BYTES for w in split.workers):
        return None
    return split


def _link_groups(
    units: list[tuple[str, int]], linked: dict[int, list[str]]
) -> list[tuple[list[str], int]] | None:
    """The units joined where names of one inode fall into different units (cp keeps a hard
    link only between names it copies in one run); None if a name lies in no unit."""
    index = {path: i for i, (path, _size) in enumerate(units)}
    parent = list(range(len(units)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for names in linked.values():
        owners = {_unit_of(name, index) for name in names}
        if -1 in owners:
            return None
        first, *rest = sorted(owners)
        for other in rest:
            parent[root(other)] = root(first)
    groups: dict[int, tuple[list[str], list[int]]] = {}
    for i, (path, size) in enumerate(units):
        paths, total = groups.setdefault(root(i), ([], [0]))
        paths.append(path)
        total[0] += size
    return [(paths, total[0]) for paths, total in groups.values()]


def _unit_of(path: str, index: dict[str, int]) -> int:
    while path not in index:
        if "/" not in path:
            return -1
        path = path.rsplit("/", 1)[0]
    return index[path]


def run(split: Split, src: Path, dst: Path) -> None:
    """Copy ``src`` onto ``dst`` by the plan; the first failing worker's error ends all."""
    for rel in split.dirs[1:]:
        _make_dir(dst / rel)
    done: queue.Queue[tuple[int, bytes]] = queue.Queue()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for units in split.workers:
            procs.append(_start(units, src, dst, done))
        for _ in procs:
            rc, err = done.get()
            if rc != 0:
                raise cp_failed(rc, err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    for rel in reversed(split.dirs):  # each after what was made in it
        try:
            copy_dir_metadata(src / rel if rel else src, dst / rel if rel else dst)
        except OSError as err:
            raise StorageError(
                f"unable to copy the attributes of '{rel or '.'}': {err.strerror or err}"
            ) from None


def cp_failed(rc: int, err: bytes) -> CommandError:
    """A failed ``cp``: its exit code and the last two lines it wrote, as one line."""
    detail = err.decode(errors="replace").strip().splitlines()
    return CommandError(f"cp failed (exit {rc}): {' '.join(detail[-2:])}")


def _start(
    units: list[str], src: Path, dst: Path, done: queue.Queue[tuple[int, bytes]]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        tied_to_parent([*CP_UNITS, "-t", str(dst), "--", *units]),
        cwd=src,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=tool_env(),
    )

    def wait() -> None:
        _, err = proc.communicate()
        done.put((proc.returncode, err))

    threading.Thread(target=wait, daemon=True).start()
    return proc


def _make_dir(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)  # its own mode once its content is in
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise


def copy_dir_metadata(src: Path, dst: Path) -> None:
    """``src``'s owner, mode, extended attributes (ACLs too) and times onto ``dst``, as
    ``cp -a`` sets them. Attributes ``dst`` got from its parent (a default ACL) and ``src``
    lacks go."""
    sfd = os.open(src, READ_DIR)
    try:
        dfd = os.open(dst, READ_DIR)
        try:
            st = os.fstat(sfd)
            os.fchown(dfd, st.st_uid, st.st_gid)
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
            names = os.listxattr(sfd)
            for name in names:
                _unsupported_ok(os.setxattr, dfd, name, os.getxattr(sfd, name))
            for name in set(os.listxattr(dfd)) - set(names):
                _unsupported_ok(os.removexattr, dfd, name)
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _unsupported_ok(func: Callable[..., object], *args: object) -> None:
    """An attribute the target file system cannot hold is left out, as ``cp -a`` does."""
    try:
        func(*args)
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
