"""The receiving side of a migration, run over SSH by the source host's ``pct``.

A migration is one *session* (``pct migrate-target session <vmid>``) that lives as long as the
source's control connection: it reserves the VMID with a placeholder config locked ``migrate``,
allocates volumes on request, and on ``commit`` installs the config (and starts the container).
When the connection ends without a commit — the source failed, was killed or the link was cut —
it frees everything it made (:mod:`shared.runtime.migration`). A session killed outright leaves
its record behind; the next command that meets that VMID sees the dead owner and rolls back the
same way. After a commit the received snapshots are removed once the source has its answer.
Data arrives through separate commands that only write into volumes of a live session:
``recv-btrfs`` (a ``btrfs send`` stream) and ``rsync`` (an rsync server on a mounted volume).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

from shared import atomic, owner, paths
from shared.ctconfig import store
from shared.ctconfig.config import Config, parse_config
from shared.ctconfig.pending import volume_referenced
from shared.errors import AlreadyExistsError, CommandError, CtkitError, LockError, StateError
from shared.locks import config_lock
from shared.net.links import is_bridge
from shared.runtime import lifecycle, migration, template
from shared.runtime.mounts import checked_writes
from shared.runtime.namespace import private_mounts
from shared.storage import btrfssend
from shared.storage.config import load_config
from shared.storage.volid import parse_volume_id
from shared.storage.volumes import (
    alloc_volume,
    free_volume,
    mounted_volume,
)
from shared.version import VERSION

Log = Callable[[str], None]
T = TypeVar("T")
# what both ends must speak alike; 2: the sender's rsync passes --timeout (a 1 refuses it);
# 3: the commit carries the migration's token, and the source acknowledges the answer
PROTOCOL = 3
MAX_REQUEST = 4 * 1024 * 1024
SNAP_NAMES = btrfssend.SNAP_NAMES
IDLE_TIMEOUT = 600.0  # the source pings every PING_INTERVAL seconds of its copy
ACK_TIMEOUT = 60.0  # after the commit: the source acknowledges at once, or went away


# --- info -----------------------------------------------------------------------------------


def _storage_info(sid: str) -> dict[str, Any]:
    cfg = load_config()
    st = cfg.get(sid)
    if st is None:
        return {"exists": False}
    info: dict[str, Any] = {"exists": True, "type": st.type_name, "content": sorted(st.content)}
    try:
        st.activate()
        vfs = os.statvfs(st.path)
        info.update(active=True, avail=vfs.f_bavail * vfs.f_frsize)
    except (CtkitError, OSError) as err:
        info.update(active=False, error=str(err))
    return info


def host_info(vmid: int | None, storages: Sequence[str], bridges: Sequence[str]) -> dict[str, Any]:
    """What a source checks before migrating here."""
    check_root()
    cfg = load_config()
    info: dict[str, Any] = {
        "ctkit": VERSION,
        "protocol": PROTOCOL,
        "node": paths.node_name(),
        "storages": {sid: _storage_info(sid) for sid in (storages or cfg.ids())},
        "bridges": {name: is_bridge(name) for name in bridges},
    }
    if vmid is not None:
        migration.recover_incoming(vmid, log=lambda _msg: None)
        info["vmid_free"] = not store.exists(vmid)
    return info


# --- the session record ----------------------------------------------------------------------


def _live_record(vmid: int) -> dict[str, Any]:
    rec = owner.read_record(migration.incoming_record(vmid))
    if not rec or not owner.record_alive(rec) or rec.get("vmid") != vmid:
        raise StateError(f"no migration into CT {vmid} in progress")
    return rec


# --- the session ----------------------------------------------------------------------------


def check_root() -> None:
    """The ctkit root the source named must be there: a remote added with a wrong ``--root``
    had a skeleton of one made by its first question (the storages' directories)."""
    if not paths.root().is_dir():
        raise StateError(f"no ctkit root '{paths.root()}' on node '{paths.node_name()}'")


def _reserve(vmid: int) -> dict[str, Any]:
    check_root()
    migration.recover_incoming(vmid, log=lambda msg: print(msg, file=sys.stderr))
    with config_lock(vmid):
        if store.exists(vmid):
            raise AlreadyExistsError(f"CT {vmid} already exists on node '{paths.node_name()}'")
        rec: dict[str, Any] = {"vmid": vmid, "volumes": []}
        owner.write_record(migration.incoming_record(vmid), rec)
        store.save(Config(vmid, {"lock": "migrate"}))
    return rec


_NO_DEFAULT = object()


def typed(value: object, kind: type[T]) -> T:
    """A value of the protocol (either way) of the type it must have; TypeError if it has
    another. JSON's true and false are no numbers here."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"not a {kind.__name__}")
    return value


def _field(req: dict[str, Any], key: str, kind: type[T], default: object = _NO_DEFAULT) -> T:
    """A request's field of the type the protocol gives it."""
    try:
        return typed(req.get(key, default), kind)
    except TypeError:
        raise CtkitError(f"malformed request: '{key}' missing or not a {kind.__name__}") from None


def _alloc(vmid: int, rec: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    volid = alloc_volume(
        _field(req, "storage", str),
        vmid,
        _field(req, "size", int),
        root_uid=_field(req, "uid", int, 0),
        root_gid=_field(req, "gid", int, 0),
        fmt=_field(req, "format", str),
    )
    rec["volumes"].append(volid)
    owner.write_record(migration.incoming_record(vmid), rec)
    return {"volid": volid}


def _commit(vmid: int, rec: dict[str, Any], req: dict[str, Any], log: Log) -> dict[str, Any]:
    conf = parse_config(_field(req, "config", str).encode(), vmid, strict=True)
    made = set(rec["volumes"])
    used = {mp.volume for mp in conf.mountpoints() if mp.type == "volume"}
    if not used <= made or any(mp.type != "volume" for mp in conf.mountpoints()):
        raise StateError("the migrated config refers to volumes this migration did not make")
    cfg = load_config()
    for volid, snap in _field(req, "btrfs", dict, {}).items():
        if volid not in made or snap not in SNAP_NAMES:
            raise StateError(f"volume '{volid}' is not part of this migration")
        sid, volname = parse_volume_id(volid)
        btrfssend.adopt(cfg.storage(sid), volname, snap)
    if conf.is_template:
        _as_template(vmid, conf, rec)
    conf.set("lock", "migrate")
    with config_lock(vmid):
        if not migration.reserved(vmid):
            raise LockError(f"CT {vmid}: the reservation of this migration is gone")
        store.save(conf)
    if _field(req, "start", bool, False):
        # still locked and not committed: a failed start is rolled back like any failure
        lifecycle.start(vmid, skiplock=True, log=log)
    rec["committed"] = True
    token = req.get("token")  # one write with the commit: a source may ask for it later
    if isinstance(token, str) and migration.TOKEN_RE.fullmatch(token):
        rec["token"] = token
    owner.write_record(migration.incoming_record(vmid), rec)
    firewall = req.get("firewall")
    if isinstance(firewall, str):
        try:
            atomic.write_text(paths.firewall_conf(vmid), firewall)
        except OSError as err:  # committed already: the container must not be rolled back
            log(f"WARN: writing the firewall config failed - {err}")
    # the lock goes after the reply (the session's end, or recovery of a committed record)
    return {}


def _as_template(vmid: int, conf: Config, rec: dict[str, Any]) -> None:
    """A template's volumes were made as any container's: they become base volumes (renamed,
    read-only or immutable), as on the source; without, the template here could neither be
    converted again nor serve as a base. Each rename is on record at once, so that a rollback
    frees the volume by the name it has."""

    def renamed(old: str, new: str) -> None:
        rec["volumes"] = [new if volid == old else volid for volid in rec["volumes"]]
        owner.write_record(migration.incoming_record(vmid), rec)

    template.convert(conf, renamed=renamed)


def _reply(out: IO[str], data: dict[str, Any]) -> None:
    out.write(json.dumps(data) + "\n")
    out.flush()


def _wait_readable(inp: IO[str], timeout: float) -> bool:
    try:
        fd = inp.fileno()
    except (OSError, ValueError):
        return True  # not a real file (tests): just read
    return bool(select.select([fd], [], [], timeout)[0])


def _request(line: str) -> dict[str, Any] | None:
    try:
        req = json.loads(line) if line else None
    except ValueError:
        req = None
    return req if isinstance(req, dict) else None


def _answer(
    vmid: int, rec: dict[str, Any], req: dict[str, Any], committed: bool, log: Log
) -> dict[str, Any]:
    op = req.get("op")
    if op == "ping":
        return {}
    if op == "alloc" and not committed:
        return _alloc(vmid, rec, req)
    if op == "commit" and not committed:
        return _commit(vmid, rec, req, log)
    if op == "ack" and committed:
        # the source has the commit's answer: it will never ask, so no note of the token
        rec.pop("token", None)
        owner.write_record(migration.incoming_record(vmid), rec)
        return {}
    raise CtkitError(f"unknown request '{op}'")


def serve(
    vmid: int, inp: IO[str], out: IO[str], log: Log, idle_timeout: float = IDLE_TIMEOUT
) -> None:
    """Run a session: one JSON request per line in, one JSON reply per line out.

    The source pings while it copies; a session that hears nothing for ``idle_timeout``
    seconds (a connection that died without closing) rolls back like one that was closed."""
    rec = _reserve(vmid)
    committed = False
    try:
        _reply(out, {"ok": True, "ctkit": VERSION, "protocol": PROTOCOL})
        while True:
            # committed, only the source's word that it has the answer is still to come
            timeout = min(idle_timeout, ACK_TIMEOUT) if committed else idle_timeout
            if not _wait_readable(inp, timeout):
                if not committed:
                    log(f"no word from the source for {timeout:.0f} s - rolling back")
                break
            req = _request(inp.readline(MAX_REQUEST))
            if req is None:
                break  # the source went away (or talks nonsense): roll back
            try:
                reply = _answer(vmid, rec, req, committed, log)
            except CtkitError as err:
                _reply(out, {"ok": False, "error": str(err)})
                if req.get("op") == "commit":
                    break
                continue
            committed = committed or req.get("op") == "commit"
            _reply(out, {"ok": True, **reply})
            if req.get("op") == "ack":
                break
    finally:
        # committed: the container runs here already, what is left is the received snapshots
        # and the replaced empty volumes, removed now that the source no longer waits
        current = owner.read_record(migration.incoming_record(vmid)) or rec
        migration.rollback_incoming(vmid, current, log)


# --- data -----------------------------------------------------------------------------------


def _session_volume(vmid: int, volid: str) -> None:
    if volid not in _live_record(vmid).get("volumes", []):
        raise StateError(f"volume '{volid}' is not part of the migration into CT {vmid}")


def recv_btrfs(
    vmid: int, volid: str, snap: str, stream: IO[bytes], ready: Callable[[], None]
) -> None:
    """Receive one stream; ``ready`` is called once the request is found valid, just before
    ``btrfs receive`` starts reading (the source starts its clock there)."""
    if snap not in SNAP_NAMES:
        raise CtkitError(f"unexpected snapshot name '{snap}'")
    _session_volume(vmid, volid)
    sid, volname = parse_volume_id(volid)
    store = load_config().storage(sid)
    ready()
    try:
        btrfssend.receive(store, volname, snap, stream)
    finally:
        # a session that ended while this stream still ran has rolled back already: what
        # arrived after that belongs to nobody, and no later command would know of it
        with migration.incoming_gone(vmid, lambda: _session_has(vmid, volid)) as gone:
            if gone:
                with contextlib.suppress(CtkitError):
                    btrfssend.discard_staging(store, volname)


def _session_has(vmid: int, volid: str) -> bool:
    try:
        _session_volume(vmid, volid)
    except StateError:
        return False
    return True


# rsync's server options that a sender may pass: short option clusters and these long ones
_RSYNC_LONG = ("--server", "--numeric-ids", "--delete", "--inplace", "--sparse", "--stats")
_RSYNC_VALUED = re.compile(r"--(bwlimit|timeout)=[0-9]{1,12}")


def _check_rsync_args(args: Sequence[str]) -> list[str]:
    if not args or args[0] != "--server" or len(args) < 3 or args[-2] != ".":
        raise CtkitError("expected rsync server arguments")
    for arg in args[1:-2]:
        ok = arg.startswith(_RSYNC_LONG) or (arg.startswith("-") and arg[1:2] != "-")
        ok = ok or _RSYNC_VALUED.fullmatch(arg) is not None  # the sender's limits
        if not ok or arg.startswith("--sender") or "sender" in arg:
            raise CtkitError(f"refusing rsync argument '{arg}'")
    return list(args[:-1])


def rsync_into(vmid: int, volid: str, args: Sequence[str]) -> int:
    """Mount the volume and run rsync's receiving server on it (stdin/stdout are the link)."""
    server_args = _check_rsync_args(args)
    _session_volume(vmid, volid)
    # killed, this process takes its mount with it (a namespace of its own), and the session's
    # rollback finds the volume free
    private_mounts()
    mnt = paths.migrate_dir() / f"{migration.STAGING_PREFIX}{vmid}-{os.getpid()}"
    mnt.mkdir(parents=True, exist_ok=True)
    try:
        # on disk before the sender may delete its copy, or the copy fails: the volume (a
        # write the storage could not take fails only in the background write-back), then a
        # raw image's own file on the storage
        with (
            mounted_volume(volid, mnt) as handle,
            checked_writes(handle, every_volume=True),
        ):
            rsync = shutil.which("rsync")
            if rsync is None:
                raise CommandError("command 'rsync' not found")
            code = subprocess.run([rsync, *server_args, str(mnt) + "/"], check=False)
        if handle.loopdev is not None:
            atomic.fsync_file(handle.source)
        return code.returncode
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()
        _free_if_orphaned(vmid, volid)


def _free_if_orphaned(vmid: int, volid: str) -> None:
    """Free the volume when its session ended meanwhile without keeping it: the rollback
    could not, while this copy held it mounted (a source killed halfway, a lost connection)."""
    with migration.incoming_gone(vmid, lambda: _session_has(vmid, volid)) as gone:
        if not gone:
            return
        conf = store.load_or_none(vmid)
        if conf is not None and volume_referenced(conf, volid):
            return  # committed: the container's own volume now
        with contextlib.suppress(CtkitError):
            free_volume(volid)
