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


class Stopper(NamedTuple):
    pid: int
    task: str


def note_file(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.stopping"


@contextlib.contextmanager
def noted(vmid: int, task: str) -> Iterator[None]:
    """Leave the note while the block stops the container (the caller holds the config lock).

    Not fsynced: a crash ends the stopper, and a note whose process is gone counts for nothing.
    """
    path = note_file(vmid)
    pid = os.getpid()
    atomic.write_bytes(path, f"{pid} {process_start(pid)} {task}\n".encode(), durable=False)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def current(vmid: int) -> Stopper | None:
    """The live process stopping the container now, or None (no note, or its writer is gone)."""
    try:
        found = read_regular(note_file(vmid), NOTE_MAX, follow_symlinks=False)
    except OSError:
        return None
    if found is None:
        return None
    fields = found[0].decode("ascii", "replace").split()
    if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields[:2]):
        return None
    pid, start = int(fields[0]), int(fields[1])
    if pid <= 0 or process_start(pid) != start:
        return None
    return Stopper(pid, fields[2])
