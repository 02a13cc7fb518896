"""Who holds a container for a long operation, and whether that process still lives.

A config ``lock:`` (``backup``, ``snapshot``, ...) says *that* a container is busy, not *who*
made it so. A process killed with SIGKILL never runs its cleanup and leaves the lock behind,
maybe with the container frozen or stopped. So a long operation (vzdump, pct snapshot,
delsnapshot, rollback, template) writes an owner record
``var/lib/ctkit/owners/owner-<vmid>.json`` before it acts (on disk: a crash is a kill too, and
its lock outlives the reboot), and rewrites it as it goes (what it froze, stopped,
snapshotted, which temp files it made). Any later command can then tell a dead owner from a
live one: the same pid AND the same process start time (``/proc/<pid>/stat`` field 22) in the
same boot, so a reused pid never counts as alive.
Undoing what a dead owner left is :mod:`shared.runtime.recovery`'s job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic, paths
from .errors import LockError

RECORD_RE = re.compile(r"owner-([1-9][0-9]{2,8})\.json")
MAX_RECORD = 8192  # a record is a few hundred bytes; anything bigger is not ours
MAX_FREE_RECORD = 1 << 20  # a migration's record lists its volumes and snapshots
BACKUP_OP = "vzdump"  # the record of a guest's backup (vzdump's per-guest run)


@dataclass
class Owner:
    """One process's claim on one container and what it has done to it so far."""

    vmid: int
    op: str
    pid: int
    start: int
    boot: str
    lock: str = ""  # the config lock this owner set (only then may recovery drop it)
    mode: str = ""
    frozen: bool = False  # the container's cgroup may be frozen by us
    stopped: bool = False  # we shut the container down and owe it a restart
    snapshot: str = ""  # a snapshot we are taking or hold
    tmpdir: str = ""
    dat: str = ""
    volumes: str = ""  # new volumes (space-separated ids) a create or restore has allocated
    replaced: str = ""  # old volumes a committed restore --force frees (space-separated ids)

    def describe(self) -> str:
        return f"{self.op} (pid {self.pid})"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (the state) on, or None for no such process or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[-1].split()  # the command name may contain spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), or None
    when there is no such process or it is a zombie."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def process_parent(pid: int) -> int | None:
    """The parent of ``pid`` (/proc/<pid>/stat field 4), or None as :func:`process_start`."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def record_path(vmid: int) -> Path:
    return paths.owner_dir() / f"owner-{vmid}.json"


def recovery_lock_path(vmid: int) -> Path:
    """Serialises recoveries of one container (a separate file: recovery itself takes the
    config lock many times, and flock does not nest across opens)."""
    return paths.run_dir() / f"owner-{vmid}.lock"


def alive(owner: Owner) -> bool:
    return owner.boot == boot_id() and process_start(owner.pid) == owner.start


def started_at(owner: Owner) -> float:
    """When the owner's process started, on the wall clock (its start is kept in clock ticks
    since boot)."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + owner.start / os.sysconf("SC_CLK_TCK")


def read(vmid: int) -> Owner | None:
    """The record of ``vmid``; a missing one is None. A record that is not a regular file or
    does not parse says nothing about any process: it is treated as a dead owner that did
    nothing (recovery then only removes it)."""
    path = record_path(vmid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return Owner(vmid, "unknown", 0, 0, "")
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_RECORD + 1)
    except OSError:  # a directory opens, and then does not read
        return Owner(vmid, "unknown", 0, 0, "")
    try:
        data = json.loads(raw) if len(raw) <= MAX_RECORD else None
        return _from_dict(vmid, data)
    except (ValueError, TypeError):
        return Owner(vmid, "unknown", 0, 0, "")


def _from_dict(vmid: int, data: Any) -> Owner:
    if not isinstance(data, dict) or data.get("vmid") != vmid:
        raise ValueError("not an owner record")
    known = {f.name: f.type for f in dataclasses.fields(Owner)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        want = {"int": int, "str": str, "bool": bool}.get(str(known.get(key)))
        if want is None or type(value) is not want:
            raise ValueError(f"bad field {key}")
        values[key] = value
    return Owner(**values)


def _write(owner: Owner, *, durable: bool = False) -> None:
    paths.owner_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(dataclasses.asdict(owner), sort_keys=True).encode()
    # Atomic; only the claim is fsynced (it comes before the config's lock, which is saved
    # durably, so a crash never leaves a lock without its owner). A process killed at any
    # instant leaves the later updates complete in the page cache, and after a crash the
    # kernel's write-back has long saved a backup's. Each guest of a backup updates it several
    # times, two of them right around the freeze, and fsyncs there queue behind every other
    # worker's writes on the same file system. An update lost by a crash leaves the record
    # saying less than was done (a temp file or snapshot left); a torn one is read as a dead
    # owner that did nothing.
    atomic.write_bytes(record_path(owner.vmid), data + b"\n", mode=0o600, durable=durable)


def claim(vmid: int, op: str, **fields: Any) -> Owner:
    """Record this process as the owner of ``vmid``. The caller has recovered a dead owner
    first; a live other owner is refused with the lock it holds."""
    current = read(vmid)
    if current is not None and current.pid != os.getpid() and alive(current):
        raise LockError(f"CT is locked ({current.lock or current.op})")
    me = os.getpid()
    owner = Owner(vmid, op, me, process_start(me) or 0, boot_id(), **fields)
    _write(owner, durable=True)
    return owner


def update(owner: Owner, **changes: Any) -> None:
    """Note a step before taking it (and its undoing after): the record always covers at least
    what has been done."""
    for key, value in changes.items():
        setattr(owner, key, value)
    _write(owner)


def release(owner: Owner) -> None:
    """Remove the record if it is still this owner's."""
    current = read(owner.vmid)
    if current is not None and (current.pid, current.start) == (owner.pid, owner.start):
        with contextlib.suppress(FileNotFoundError):
            record_path(owner.vmid).unlink()


def discard(vmid: int) -> None:
    _remove(record_path(vmid))


def _remove(path: Path) -> None:
    """Remove a record; whatever else is at its name goes too (a directory: no record of ours
    is one, and left there it would stand for a dead owner at every command)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


def recorded_vmids() -> list[int]:
    try:
        names = os.listdir(paths.owner_dir())
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := RECORD_RE.fullmatch(n)))


# --- free-form records at a path of the caller's (a migration's session state) ----------------


def me() -> dict[str, Any]:
    """This process as an owner: pid, start time and boot, the fields :func:`record_alive`
    checks."""
    pid = os.getpid()
    return {"pid": pid, "start": process_start(pid) or 0, "boot": boot_id()}


def record_alive(record: Mapping[str, Any]) -> bool:
    """The rule of :func:`alive` for a free-form record (a corrupt one is a dead owner's)."""
    pid, start = record.get("pid"), record.get("start")
    if not isinstance(pid, int) or pid <= 0 or not isinstance(start, int):
        return False
    return record.get("boot") == boot_id() and process_start(pid) == start


def write_record(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` plus this process as its owner, written atomically (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**data, **me()}, sort_keys=True) + "\n"
    atomic.write_text(path, text, mode=0o600)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``; None when there is none. One that is not a regular file or does
    not parse is ``{}``: a dead owner's that says nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_FREE_RECORD + 1)
    except OSError:  # a directory opens, and then does not read
        return {}
    try:
        data = json.loads(raw) if len(raw) <= MAX_FREE_RECORD else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def remove_record(path: Path) -> None:
    _remove(path)
