"""The live changes a ``pct set`` is making to a running container, noted for the next one.

A ``pct set`` killed (SIGKILL, or Ctrl-C between a limit's write and its record) after a live
change and before its record left the container unlike its config: an interface on no bridge,
a memory limit the config does not have. ``pct set --revert`` then changed only the config,
and giving the config's value again changed nothing, as nothing differed. The note names the
keys being made live, for this instance of the container (its init process); the next
``pct set`` finds it, its writer gone, and first makes those keys live as the config says.
A note of an earlier instance (the container stopped or restarted since: its start took the
config) is dropped unread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared import owner as owners
from shared import paths
from shared.ctconfig.pending import HOTPLUG_LIVE
from shared.errors import CtkitError

# what a note may name: the limits written to the cgroup (cores: a fast key whose cpuset is
# written live too), and the interfaces as the config spells them (a 'net05' would be net5's
# interface under another name); a mount point killed half-way is taken over by the next
# change of its key (hotplug._volume_mounted_at)
LIMIT_KEYS = HOTPLUG_LIVE | {"cores"}
NET_RE = re.compile(r"net(?:[0-9]|[12][0-9]|3[01])")
MAX_KEYS = 64


def note_path(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.live-changes"


def _instance(init: int) -> list[int]:
    return [init, owners.process_start(init) or 0]


@contextmanager
def noting(vmid: int, keys: set[str], init: int | None) -> Iterator[None]:
    """Note ``keys`` while the block makes them live. The note goes when the block ends or
    fails with the command's own error (what it could not do is then pending, on record); an
    interrupt or a crash leaves it for the next ``pct set``."""
    if not keys or init is None:
        yield
        return
    path = note_path(vmid)
    owners.write_record(path, {"keys": sorted(keys), "instance": _instance(init)})
    try:
        yield
    except CtkitError:
        owners.remove_record(path)
        raise
    owners.remove_record(path)


def owed(vmid: int, init_pid: Callable[[], int | None]) -> tuple[list[str], int | None]:
    """The keys a dead ``pct set`` was making live in the instance that runs now, and its init
    (none: no note, a live writer, or another instance, whose note goes). The caller makes
    them live and then calls :func:`done`: a repair that is itself killed is tried again, one
    that fails is not tried at every command. One failed ``open`` when there is no note."""
    path = note_path(vmid)
    record = owners.read_record(path)
    if record is None or owners.record_alive(record):
        return [], None
    keys, init = record.get("keys"), init_pid()
    if init is None or record.get("instance") != _instance(init) or not isinstance(keys, list):
        owners.remove_record(path)
        return [], None
    found = noted({k for k in keys[:MAX_KEYS] if isinstance(k, str)})
    if not found:
        owners.remove_record(path)
    return sorted(found), init


def done(vmid: int) -> None:
    """The keys :func:`owed` gave are live as the config says (or could not be made so)."""
    owners.remove_record(note_path(vmid))


def noted(keys: set[str]) -> set[str]:
    """The keys of ``keys`` a note covers."""
    return {k for k in keys if k in LIMIT_KEYS or NET_RE.fullmatch(k)}
