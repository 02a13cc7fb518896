"""Backup retention (``prune-backups``): option schema, normalisation (spec vzdump §5.1) and the
marking algorithm (§5.2).

Marking works on plain data (a ctime and an optional pre-mark per entry), so the storage layer,
a plain dump directory and the tests all share the one implementation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .formats.propstring import Field, PropertyStringError, PropSchema
from .formats.types import Bool, FormatError, Int

KEEP_OPTIONS = (
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
)

PRUNE_SCHEMA = PropSchema(
    {
        "keep-all": Field(Bool()),
        **{name: Field(Int(minimum=0)) for name in KEEP_OPTIONS},
    }
)

# ``failed``: the backup's last read-back (verify, restore-test) failed. It holds no keep slot
# (counted, it made the next night's retention remove the good backup before it) and is not
# removed by retention either: what to do with it is the user's call.
Mark = Literal["keep", "remove", "protected", "renamed", "failed"]
PRE_MARKS = ("protected", "renamed", "failed")


def parse_prune_backups(raw: str) -> dict[str, Any]:
    """Parse and normalise a ``prune-backups`` property string (raises FormatError)."""
    return normalize(PRUNE_SCHEMA.parse(raw))


def normalize(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Proxmox's rules: no value > 0 means keep-all; keep-all=1 with others is an error."""
    keep_all = bool(opts.get("keep-all"))
    rest = {k: v for k, v in opts.items() if k != "keep-all"}
    if not any(int(v) > 0 for v in rest.values()):
        return {"keep-all": True}
    if keep_all:
        raise FormatError("keep-all cannot be set together with other options.")
    return rest


def render(opts: Mapping[str, Any]) -> str:
    return PRUNE_SCHEMA.render(opts)


def is_keep_all(opts: Mapping[str, Any]) -> bool:
    """True when ``opts`` keeps everything: keep-all set, or no keep value above zero."""
    if opts.get("keep-all"):
        return True
    return not any(int(opts.get(k) or 0) > 0 for k in KEEP_OPTIONS)


def log_string(opts: Mapping[str, Any]) -> str:
    """The retention as vzdump logs it: ``keep-daily=7, keep-last=3`` (keys sorted)."""
    return ", ".join(f"{k}={_plain(opts[k])}" for k in sorted(opts))


def _plain(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def retention_limit(opts: Mapping[str, Any]) -> int | None:
    """The backup count cap used when ``remove=0`` (§5.4): the sum of all keep values.

    ``None`` for keep-all, which has no cap.
    """
    if is_keep_all(opts):
        return None
    return sum(int(opts.get(k) or 0) for k in KEEP_OPTIONS)


def backup_limit_error(opts: Mapping[str, Any], remove: bool, count: int) -> str | None:
    """The §5.4 pre-check: with remove=0 and a limit, ``count`` existing (unprotected,
    standard-named) backups must stay below it. Returns the error text, or None when fine."""
    limit = retention_limit(opts)
    if remove or limit is None or count < limit:
        return None
    return (
        f"There is a max backup limit of {limit} enforced by the target storage or the vzdump "
        "parameters. Either increase the limit or delete old backups."
    )


# --- marking (§5.2) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneEntry:
    """One backup as the algorithm sees it: its ctime and an optional pre-mark."""

    ctime: int
    mark: str | None = None


BucketFunc = Callable[[dt.datetime], Hashable]

# Option order is fixed; each maps a local time to the bucket it fills.
BUCKETS: tuple[tuple[str, BucketFunc], ...] = (
    ("keep-last", lambda t: t),
    ("keep-hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep-daily", lambda t: (t.year, t.month, t.day)),
    ("keep-weekly", lambda t: t.isocalendar()[:2]),  # ISO week-year and week, Monday first
    ("keep-monthly", lambda t: (t.year, t.month)),
    ("keep-yearly", lambda t: t.year),
)


def mark(
    entries: Sequence[PruneEntry], opts: Mapping[str, Any], tz: dt.tzinfo | None = None
) -> list[str]:
    """Mark every entry ``keep``/``remove`` (pre-marks stay); one mark per entry, input order.

    ``tz`` is the zone buckets are computed in; ``None`` means the process's local time.
    """
    marks: list[str | None] = [e.mark for e in entries]
    if is_keep_all(opts):
        return [m if m is not None and m != "remove" else "keep" for m in marks]
    # Newest first; sorted() is stable, so equal ctimes keep their input order (like Perl's).
    order = sorted(range(len(entries)), key=lambda i: entries[i].ctime, reverse=True)
    times = {i: _local(entries[i].ctime, tz) for i in order}
    for option, bucket in BUCKETS:
        count = int(opts.get(option) or 0)
        if count > 0:
            _mark_option(order, marks, [bucket(times[i]) for i in order], count)
    return [m if m is not None else "remove" for m in marks]


def _mark_option(
    order: Sequence[int], marks: list[str | None], keys: Sequence[Hashable], count: int
) -> None:
    """One option's pass: fill up to ``count`` new buckets, newest entry of each bucket kept."""
    covered = {key for i, key in zip(order, keys, strict=True) if marks[i] == "keep"}
    taken: set[Hashable] = set()
    for i, key in zip(order, keys, strict=True):
        if marks[i] is not None or key in covered:
            continue
        if key in taken:
            marks[i] = "remove"
            continue
        if len(taken) >= count:
            break
        taken.add(key)
        marks[i] = "keep"


def _local(ctime: int, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(ctime, tz)


@dataclass(frozen=True)
class PruneCandidate:
    """A backup of some guest, as listed by a storage or a dump directory.

    ``name`` is opaque to the algorithm (a volume id or a path); ``std_name`` is False for names
    that are not ``vzdump-<type>-<vmid>-YYYY_MM_DD-hh_mm_ss``, which pruning never touches.
    """

    name: str
    ctime: int
    vmid: int | None = None
    type: str = "lxc"
    protected: bool = False
    std_name: bool = True
    failed: bool = False  # its last read-back failed


def mark_group(
    candidates: Sequence[PruneCandidate], opts: Mapping[str, Any], tz: dt.tzinfo | None = None
) -> list[tuple[PruneCandidate, str]]:
    """Mark the backups of one guest (type + VMID); returns (candidate, mark) in input order.

    Non-standard names are ``renamed``, protected ones ``protected`` (protected wins) and those
    whose read-back failed ``failed``; none of them takes part in the marking. A list that
    spans several guests is split into groups first, so one guest's backups never count
    against another's.
    """
    result: list[str | None] = [None] * len(candidates)
    groups: dict[tuple[str, int | None], list[int]] = {}
    for i, cand in enumerate(candidates):
        if cand.protected:
            result[i] = "protected"
        elif not cand.std_name:
            result[i] = "renamed"
        elif cand.failed:
            result[i] = "failed"
        if cand.std_name:
            groups.setdefault((cand.type, cand.vmid), []).append(i)
    for members in groups.values():
        entries = [PruneEntry(candidates[i].ctime, result[i]) for i in members]
        for i, m in zip(members, mark(entries, opts, tz), strict=True):
            result[i] = m
    return [(cand, m or "keep") for cand, m in zip(candidates, result, strict=True)]


__all__ = [
    "KEEP_OPTIONS",
    "PRE_MARKS",
    "PRUNE_SCHEMA",
    "Mark",
    "PropertyStringError",
    "PruneCandidate",
    "PruneEntry",
    "backup_limit_error",
    "is_keep_all",
    "log_string",
    "mark",
    "mark_group",
    "normalize",
    "parse_prune_backups",
    "render",
    "retention_limit",
]
