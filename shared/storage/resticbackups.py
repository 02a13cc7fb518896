"""The backups of a ``restic`` storage: snapshots as volumes ``<id>:backup/ct/<vmid>/<time>``.

A vzdump snapshot carries the tags ``vzdump``, ``type=lxc``, ``vmid=<vmid>``, ``size=<bytes>``,
``time=<its time>`` and, when set, ``protected`` and ``notes=<base64url>`` (restic 0.14 has no
snapshot description, and a tag may hold no comma or newline). Its time is the backup's start
to the second, in UTC, so the volume id (Proxmox's PBS form) names one snapshot of a host; the
``time`` tag lets a restic command select it without a lookup first (``latest`` with the tags
of :func:`selector`; backups written before that tag have to be looked up). Snapshots
without the ``vzdump`` tag are not ours and never listed or touched. Each snapshot keeps the
host that wrote it: a repository may be shared by several hosts, whose guests can have the same
VMIDs, so retention only ever counts and removes this node's (listing and restore see all, for
disaster recovery).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .. import paths, restic
from ..errors import NotFoundError, StorageError
from ..formats.archivename import STD_NAME_RE, ArchiveInfo, backup_basename
from ..formats.digits import ascii_int
from ..printable import printable
from ..safefile import READ_DIR
from .listing import VolumeEntry
from .resticplugin import ResticStorage
from .volid import VolName

TAG = "vzdump"
PROTECTED = "protected"
TIME_TAG = "time"
VOLNAME_RE = re.compile(
    r"backup/ct/([1-9][0-9]{2,8})/([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"
)
_VMID = re.compile(r"[1-9][0-9]{2,8}")
_ID = re.compile(r"[0-9a-f]{64}")
TIME_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_restic_time(text: str) -> int:
    m = TIME_RE.fullmatch(text)
    if not m:
        raise StorageError(f"unreadable snapshot time '{text}'")
    zone = "+00:00" if m.group(2) == "Z" else m.group(2)
    try:  # month 13, hour 99, year 0: the pattern's digits, but no time (a traceback)
        return int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    except (ValueError, OverflowError):
        raise StorageError(f"unreadable snapshot time '{text}'") from None


def volname_parts(volname: str) -> tuple[int, str]:
    """(vmid, UTC time as in the name) of a backup's volume name."""
    m = VOLNAME_RE.fullmatch(volname)
    if not m:
        raise StorageError(
            f"unable to parse restic volume name '{volname}'",
            hint="restic backups are named backup/ct/<vmid>/<YYYY-MM-DDTHH:MM:SSZ>",
        )
    return int(m.group(1)), m.group(2)


def parse_volname(volname: str) -> VolName:
    vmid, stamp = volname_parts(volname)
    return VolName("backup", f"ct/{vmid}/{stamp}", vmid, format="restic")


def encode_notes(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_notes(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


@dataclass(frozen=True)
class Snapshot:
    """One vzdump snapshot of the repository."""

    id: str
    vmid: int
    ctime: int
    tags: tuple[str, ...]
    host: str = ""  # the node that wrote it (restic's host name)
    tree: str = ""
    origin: str = ""  # the snapshot this one was re-tagged from (restic's ``original``), or itself
    copies: tuple[str, ...] = ()  # stale copies of this backup (see :func:`_one_per_backup`)

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.copies)

    @property
    def protected(self) -> bool:
        return PROTECTED in self.tags

    @property
    def notes(self) -> str | None:
        value = restic.tag_value(self.tags, "notes")
        return None if value is None else decode_notes(value)

    @property
    def size(self) -> int:
        value = restic.tag_value(self.tags, "size") or "0"
        return ascii_int(value) or 0

    def volname(self) -> str:
        return f"backup/ct/{self.vmid}/{iso_time(self.ctime)}"

    @property
    def time_tagged(self) -> bool:
        """Whether :func:`selector` selects this snapshot."""
        return restic.tag_value(self.tags, TIME_TAG) == iso_time(self.ctime)


def selector(volname: str) -> str:
    """The tag list (restic's ``--tag``, all of them) that only the backup ``volname`` has."""
    vmid, stamp = volname_parts(volname)
    return f"{TAG},type=lxc,vmid={vmid},{TIME_TAG}={stamp}"


def _snapshot(item: Any) -> Snapshot | None:
    if not isinstance(item, dict):
        return None
    tags = tuple(t for t in item.get("tags") or () if isinstance(t, str))
    vmid = restic.tag_value(tags, "vmid")
    if (
        TAG not in tags
        or vmid is None
        or not _VMID.fullmatch(vmid)
        or restic.tag_value(tags, "type") != "lxc"
    ):
        return None
    sid = str(item.get("id", ""))
    if not _ID.fullmatch(sid):
        return None
    tree, origin = str(item.get("tree", "")), str(item.get("original") or sid)
    try:  # a repository is shared with others: a time no volume name can hold is skipped
        when = parse_restic_time(str(item.get("time", "")))
        host = str(item.get("hostname") or "")
        snap = Snapshot(sid, int(vmid), when, tags, host, tree, origin)
        if VOLNAME_RE.fullmatch(snap.volname()):
            return snap
    except (StorageError, ValueError, OverflowError, OSError):
        pass
    return None


def snapshots(store: ResticStorage, vmid: int | None = None) -> list[Snapshot]:
    """ctkit's snapshots in the repository, of one guest or of all. Tags in one ``--tag`` must
    all match (several ``--tag`` options match any of them), and the guest is checked again
    here: retention removes what this returns."""
    wanted = TAG if vmid is None else f"{TAG},vmid={vmid}"
    # without restic's lock: it only reads snapshot files (one a forget removes meanwhile is
    # skipped by restic), and restic 0.14 sleeps 0.2 s after taking any lock
    raw = restic.run_json(store.repo, ["--no-lock", "snapshots", "--tag", wanted])
    found = [s for s in (_snapshot(i) for i in raw or []) if s is not None]
    if vmid is not None:
        found = [s for s in found if s.vmid == vmid]
    return sorted(_one_per_backup(found), key=lambda s: (s.vmid, s.ctime, s.id))


def _one_per_backup(found: list[Snapshot]) -> list[Snapshot]:
    """Copies of one backup made one. ``restic tag`` (a backup's notes or protection changed)
    saves the re-tagged snapshot, then deletes the one it replaces: killed in between, both
    stay, with the same data and time, and the volume name named two snapshots (its restore
    and every later retention were refused). The copy that replaced another is the backup;
    between copies that both replaced one, a protected one, so that no copy's protection is
    lost. The others go with it when it is removed or re-tagged."""
    groups: dict[tuple[str, int, int, str, str], list[Snapshot]] = {}
    for snap in found:
        key = (snap.host, snap.vmid, snap.ctime, snap.tree, snap.origin)
        groups.setdefault(key, []).append(snap)
    merged = []
    for group in groups.values():
        if len(group) == 1 or not group[0].tree:
            merged += group
            continue
        best = min(group, key=lambda s: (s.id == s.origin, not s.protected, s.id))
        merged.append(replace(best, copies=tuple(sorted(s.id for s in group if s is not best))))
    return merged


def entry(store: ResticStorage, snap: Snapshot) -> VolumeEntry:
    name = backup_basename(snap.vmid, snap.ctime)
    return VolumeEntry(
        volid=store.volid(snap.volname()),
        content="backup",
        format="restic",
        size=snap.size,
        path=store.subdir("backup") / f"{name}.log",
        ctime=snap.ctime,
        vmid=snap.vmid,
        subtype="lxc",
        notes=snap.notes,
        protected=snap.protected,
        host=snap.host,
        archive=ArchiveInfo(
            filename=name, type="lxc", extension="restic", format="restic", compression=None,
            decompressor=None, is_std_name=True, vmid=snap.vmid, ctime=snap.ctime,
            logfilename=f"{name}.log", notesfilename="", protectedfilename="",
        ),
    )  # fmt: skip


def list_backups(
    store: ResticStorage, vmid: int | None = None, subtype: str | None = None
) -> list[VolumeEntry]:
    if subtype not in (None, "lxc"):
        return []
    return sorted((entry(store, s) for s in snapshots(store, vmid)), key=lambda e: e.volid)


def find(store: ResticStorage, volname: str) -> Snapshot:
    """The one snapshot a volume name names (NotFoundError: none). Hosts that share a
    repository can back up a guest with the same VMID in the same second: then this node's
    snapshot is the one meant, as retention counts only this node's and removes what it
    marked through this lookup. Refused when several match and not exactly one is this node's."""
    vol = parse_volname(volname)
    assert vol.vmid is not None
    matches = [s for s in snapshots(store, vol.vmid) if s.volname() == volname]
    if not matches:
        raise NotFoundError(f"can't find backup '{store.volid(volname)}'")
    if len(matches) == 1:
        return matches[0]
    mine = [s for s in matches if s.host == paths.node_name()]
    if len(mine) == 1:
        return mine[0]
    # host names come from any writer of the repository: escaped before they reach a terminal
    hosts = ", ".join(sorted(printable(s.host) or "-" for s in matches))
    raise StorageError(
        f"backup '{store.volid(volname)}' names {len(matches)} snapshots (hosts: {hosts})",
        hint=f"none is this node's ('{paths.node_name()}')" if not mine else None,
    )


def remove(
    store: ResticStorage, volname: str, *, reclaim: bool = True, gone_ok: bool = False
) -> None:
    """Forget a backup's snapshot; with ``gone_ok`` one that is not there (another prune took
    it first) is done, as restic's forget itself takes an ID forgotten meanwhile."""
    try:
        snap = find(store, volname)
    except NotFoundError:
        if gone_ok:
            return
        raise
    if snap.protected:
        raise StorageError(f"cannot remove protected backup '{store.volid(volname)}'")
    restic.run_exclusive(store.repo, ["forget", *snap.ids])
    _remove_log(store, snap)
    if reclaim:
        reclaim_space(store)


def creating_line(volid: str) -> str:
    """The line a backup's task log names its backup with, near its top (:func:`_remove_log`
    finds the log by it)."""
    return f"creating restic backup '{volid}'"


def _remove_log(store: ResticStorage, snap: Snapshot) -> None:
    """A forgotten backup's task log goes with it, as a dir storage's goes with its archive.

    The log is named in the local time of its backup, and the zone may have changed since (a
    time zone set after install, ``TZ`` in a timer's environment): the name this zone gives can
    be another backup's log. So the log removed is the one whose first lines name this backup,
    looked for among the guest's logs named within a day of it. Unlinked by name in the
    storage's log directory, opened with O_NOFOLLOW: a symlink there never sends the unlink
    elsewhere. The snapshot is gone already: a log that cannot be removed is left, never a
    reason to report the removal as failed."""
    marker = creating_line(store.volid(snap.volname())).encode()
    with contextlib.suppress(OSError):  # missing, or not a directory (ELOOP, ENOTDIR)
        fd = os.open(store.subdir("backup"), READ_DIR)
        try:
            for name in _log_names(fd, snap):
                if _names_backup(fd, name, marker):
                    os.unlink(name, dir_fd=fd)
                    return
        finally:
            os.close(fd)


LOG_NAME_RE = re.compile(STD_NAME_RE.format(type="lxc", ext="log"))
LOG_HEAD = 8192  # the line naming the backup is among a log's first


def _log_names(fd: int, snap: Snapshot) -> list[str]:
    """The guest's log names within a day of the snapshot's time (local times lie at most 14
    hours from UTC), the one this zone gives first."""
    first = f"{backup_basename(snap.vmid, snap.ctime)}.log"
    at = datetime.fromtimestamp(snap.ctime, UTC).replace(tzinfo=None)
    near: list[str] = []
    for name in sorted(os.listdir(fd)):
        m = LOG_NAME_RE.fullmatch(name)
        if m is None or name == first or int(m.group(2)) != snap.vmid:
            continue
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[2:])
        try:
            named = datetime(year, month, day, hour, minute, second)
        except ValueError:
            continue
        if abs((named - at).total_seconds()) <= 86400:
            near.append(name)
    return [first, *near]


def _names_backup(fd: int, name: str, marker: bytes) -> bool:
    try:
        log = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return False
    with os.fdopen(log, "rb") as fh:
        return stat.S_ISREG(os.fstat(log).st_mode) and marker in fh.read(LOG_HEAD)


def reclaim_space(store: ResticStorage) -> None:
    """``restic prune``: the data only forgotten snapshots used is deleted."""
    restic.run_exclusive(store.repo, ["prune"])


def _retag(store: ResticStorage, snap: Snapshot, remove_tags: list[str], add: list[str]) -> None:
    args = ["tag"]
    for tag in remove_tags:
        args += ["--remove", tag]
    for tag in add:
        args += ["--add", tag]
    restic.run_exclusive(store.repo, [*args, snap.id])
    if snap.copies:  # what a killed re-tag left: the backup is the one just re-tagged
        restic.run_exclusive(store.repo, ["forget", *snap.copies])


def set_notes(store: ResticStorage, volname: str, text: str) -> None:
    snap = find(store, volname)
    old = [t for t in snap.tags if t.startswith("notes=")]
    _retag(store, snap, old, [f"notes={encode_notes(text)}"] if text else [])


def set_protected(store: ResticStorage, volname: str, protected: bool) -> None:
    snap = find(store, volname)
    if protected == snap.protected:
        return
    if not protected:
        _retag(store, snap, [PROTECTED], [])
        return
    limit = store.max_protected_backups
    if limit is not None and limit > -1:
        count = sum(1 for s in snapshots(store, snap.vmid) if s.protected)
        if count >= limit:
            raise StorageError(
                f"The number of protected backups per guest is limited to {limit} "
                f"on storage '{store.id}'"
            )
    _retag(store, snap, [], [PROTECTED])
