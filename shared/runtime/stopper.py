"""Who is stopping a container: the note a stop leaves for LXC's post-stop hook.

A stop, shutdown or reboot holds the container's config lock from its checks until the
container is down and its monitor gone, as Proxmox's do: no start, backup or rollback gets in
between (a backup started during a reboot found the container down and kept it so). The
post-stop hook, which the monitor runs meanwhile, would wait for that lock to apply the pending
changes; the note tells it that the stopper holds the lock and applies them itself.

A note outlives a stopper that is killed; it names that process by pid and start time, so a
note whose process is gone (or whose pid another process has now) counts for nothing, and the
next start (which holds the lock) removes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .. import atomic, paths
from ..owner import process_start
from ..regularfile import read_regular

NOTE_MAX = 80  # bytes: "<pid> <start time> <task>"
# the task ``pct stop --overrule-shutdown`` may abort: a ``pct shutdown`` (Proxmox's vzshutdown),
# not a backup's or a migration's shutdown
SHUTDOWN = "shutdown"
REBOOT = "reboot"  # the task whose note says that the container is owed a start (one word)


class Stopper(NamedTuple):
    pid: int
    task: str


def note_file(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.stopping"


def owed_file(vmid: int) -> Path:
    """A reboot's note, from its shutdown until its start: the container is owed a start."""
    return paths.run_dir() / f"ct-{vmid}.owed-start"


@contextlib.contextmanager
def noted(vmid: int, task: str) -> Iterator[None]:
    """Leave the note while the block stops the container (the caller holds the config lock).

    Not fsynced: a crash ends the stopper, and a note whose process is gone counts for nothing.
    """
    path = note_file(vmid)
    _write(path, task)
    try:
        yield
    finally:
        drop(path)


def note_owed(vmid: int, task: str) -> None:
    """Note that this process is about to shut the container down and owes it a start (a
    reboot): killed before :func:`drop` of the note, the next command's recovery starts it
    (:func:`owed_by_dead`)."""
    _write(owed_file(vmid), task)


def drop_owed(vmid: int) -> None:
    """The start that :func:`note_owed` noted is done, or no longer owed."""
    drop(owed_file(vmid))


def drop(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _write(path: Path, task: str) -> None:
    pid = os.getpid()
    atomic.write_bytes(path, f"{pid} {process_start(pid)} {task}\n".encode(), durable=False)


def current(vmid: int) -> Stopper | None:
    """The live process stopping the container now, or None (no note, or its writer is gone)."""
    found = _read(note_file(vmid))
    return found[0] if found is not None and found[1] else None


def owed_by_dead(vmid: int) -> bool:
    """Whether a reboot that is gone left the container owed a start (one failed ``open``
    when there is no note)."""
    found = _read(owed_file(vmid))
    return found is not None and not found[1]


def _read(path: Path) -> tuple[Stopper, bool] | None:
    """A note's writer and whether it still runs, or None for no (readable) note."""
    try:
        found = read_regular(path, NOTE_MAX, follow_symlinks=False)
    except OSError:
        return None
    if found is None:
        return None
    fields = found[0].decode("ascii", "replace").split()
    if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields[:2]):
        return None
    pid, start = int(fields[0]), int(fields[1])
    if pid <= 0:
        return None
    return Stopper(pid, fields[2]), process_start(pid) == start
