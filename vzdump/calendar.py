"""Calendar events for backup schedules: Proxmox's systemd-like subset (spec vzdump §8).

    [WEEKDAYS] [[YEARS-]MONTHS-DAYS] [[HOURS:]MINUTES[:SECONDS]] [UTC]

Every field takes ``*``, lists (``a,b``), ranges (``8..17``) and repeats (``*/15``, ``0/15``,
``8..17/2``); weekdays take names (``mon``, ``monday``) and ranges that may wrap (``fri..mon``).
A lone time field is the minutes; a missing time means ``00:00:00``. Keywords: minutely, hourly,
daily, weekly, monthly, yearly/annually, quarterly, semiannually/semi-annually.

Daylight saving time (local time, the default): Proxmox (proxmox-time) and systemd both compute
with ``mktime`` and *skip* a wall-clock time that a spring-forward gap removes, so a 02:30 job does
not run at all on that day (systemd issue #5595). ctkit instead fires such a time at the first
instant after the gap (03:00 local for a 02:00-03:00 gap); several skipped times collapse into that
one run. A wall-clock time that a fall-back transition repeats fires once, at its first occurrence.
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.formats.types import FormatError

UTC = dt.UTC
MAX_YEAR = 2199  # systemd's upper limit, kept by Proxmox

WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}  # fmt: skip

# field name -> (smallest value, largest value, start of "*/N")
FIELDS = {
    "year": (0, MAX_YEAR, 0),
    "month": (1, 12, 1),
    "day": (1, 31, 1),
    "hour": (0, 23, 0),
    "minute": (0, 59, 0),
    "second": (0, 59, 0),
}


class CalendarError(FormatError):
    """An invalid calendar event; the text names the bad part."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"value '{text}' is not a valid calendar event: {reason}")
        self.text = text
        self.reason = reason


Values = tuple[int, ...] | None  # allowed values in ascending order; None = any


@dataclass(frozen=True)
class CalendarEvent:
    text: str
    weekdays: frozenset[int] | None = None  # 0 = Monday
    year: Values = None
    month: Values = None
    day: Values = None
    hour: Values = None
    minute: Values = None
    second: Values = None
    utc: bool = False


class _Reject(Exception):
    """Internal: a parse failure, turned into a CalendarError naming the whole event."""


def _keyword(name: str) -> dict[str, Values | frozenset[int]] | None:
    zero: Values = (0,)
    midnight = {"hour": zero, "minute": zero, "second": zero}
    table: dict[str, dict[str, Values | frozenset[int]]] = {
        "minutely": {"second": zero},
        "hourly": {"minute": zero, "second": zero},
        "daily": dict(midnight),
        "weekly": {**midnight, "weekdays": frozenset({0})},
        "monthly": {**midnight, "day": (1,)},
        "yearly": {**midnight, "day": (1,), "month": (1,)},
        "quarterly": {**midnight, "day": (1,), "month": (1, 4, 7, 10)},
        "semiannually": {**midnight, "day": (1,), "month": (1, 7)},
    }
    aliases = {"annually": "yearly", "semi-annually": "semiannually"}
    return table.get(aliases.get(name, name))


def parse_event(text: str) -> CalendarEvent:
    """Parse and validate a calendar event (raises :class:`CalendarError`)."""
    try:
        return _parse(text)
    except _Reject as err:
        raise CalendarError(text, str(err)) from None


def check_event(text: str) -> None:
    """Validation hook for schema types (``Str(check=...)``)."""
    parse_event(text)


def _parse(text: str) -> CalendarEvent:
    words = text.split()
    utc = bool(words) and words[-1] == "UTC"
    if utc:
        words = words[:-1]
    if not words:
        raise _Reject("empty event")
    if len(words) == 1 and (kw := _keyword(words[0].lower())) is not None:
        return CalendarEvent(text, utc=utc, **kw)  # type: ignore[arg-type]
    parts: dict[str, Values | frozenset[int]] = {}
    if words[0][:1].isalpha():
        parts["weekdays"] = _parse_weekdays(words.pop(0))
    if words and "-" in words[0] and ":" not in words[0]:
        parts.update(_parse_date(words.pop(0)))
    if words:
        parts.update(_parse_time(words.pop(0)))
    else:
        parts.update(hour=(0,), minute=(0,), second=(0,))
    if words:
        raise _Reject(f"unexpected '{words[0]}'")
    return CalendarEvent(text, utc=utc, **parts)  # type: ignore[arg-type]


def _parse_weekdays(word: str) -> frozenset[int]:
    days: set[int] = set()
    for item in word.split(","):
        first, sep, last = item.partition("..")
        start = _weekday(first)
        end = _weekday(last) if sep else start
        span = (end - start) % 7  # fri..mon wraps over the weekend
        days.update((start + k) % 7 for k in range(span + 1))
    return frozenset(days)


def _weekday(name: str) -> int:
    day = WEEKDAYS.get(name.lower())
    if day is None:
        raise _Reject(f"unknown weekday '{name}'" if name else "missing weekday")
    return day


def _parse_date(word: str) -> dict[str, Values]:
    pieces = word.split("-")
    if len(pieces) == 2:
        pieces.insert(0, "*")
    if len(pieces) != 3:
        raise _Reject(f"invalid date '{word}'")
    names = ("year", "month", "day")
    return {name: _parse_field(name, piece) for name, piece in zip(names, pieces, strict=True)}


def _parse_time(word: str) -> dict[str, Values]:
    pieces = word.split(":")
    if len(pieces) > 3:
        raise _Reject(f"invalid time '{word}'")
    if len(pieces) == 1:  # a lone number is the minutes, of every hour
        return {"minute": _parse_field("minute", pieces[0]), "second": (0,)}
    result = {
        "hour": _parse_field("hour", pieces[0]),
        "minute": _parse_field("minute", pieces[1]),
        "second": (0,),
    }
    if len(pieces) == 3:
        result["second"] = _parse_field("second", pieces[2])
    return result


def _parse_field(name: str, text: str) -> Values:
    _, highest, star = FIELDS[name]
    if text == "*":
        return None
    m = re.fullmatch(r"\*/(\d+)", text)
    if m:
        step = int(m.group(1))
        if not 0 < step <= highest:
            raise _Reject(f"invalid repetition '{text}' for {name}")
        return tuple(range(star, highest + 1, step))
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(name, item))
    return tuple(sorted(values))


def _parse_item(name: str, item: str) -> range:
    lowest, highest, _ = FIELDS[name]
    m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?(?:/(\d+))?", item)
    if not m:
        raise _Reject(f"invalid {name} '{item}'")
    start = _number(name, m.group(1), lowest, highest)
    end = _number(name, m.group(2), lowest, highest) if m.group(2) else None
    if end is not None and start > end:
        raise _Reject(f"range start is bigger than end in {name} '{item}'")
    step = int(m.group(3)) if m.group(3) else None
    if step == 0:  # Proxmox reads "8/0", and "0..59/0" too, as just the start
        return range(start, start + 1)
    if step is None:
        return range(start, (end if end is not None else start) + 1)
    return range(start, (end if end is not None else highest) + 1, step)


def _number(name: str, text: str, lowest: int, highest: int) -> int:
    value = int(text)
    if not lowest <= value <= highest:
        raise _Reject(f"{name} {value} out of range {lowest}..{highest}")
    return value


# --- computing the next event ----------------------------------------------------------------


def local_zone() -> dt.tzinfo:
    """The host's time zone as a DST-aware zone: $TZ, else /etc/localtime, else UTC."""
    key = os.environ.get("TZ", "").lstrip(":")
    if key:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            return ZoneInfo(link.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh)
    except (OSError, ValueError):
        return UTC


def next_event(
    event: CalendarEvent | str, after: dt.datetime, tz: dt.tzinfo | None = None
) -> dt.datetime | None:
    """The first instant strictly after ``after`` at which ``event`` fires, or None if never.

    The wall clock is read in ``tz`` (default: ``after``'s zone if it has one, else the local
    zone; UTC for ``... UTC`` events). A naive ``after`` is wall-clock time in that zone. The
    result is an aware datetime in that zone.
    """
    ev = parse_event(event) if isinstance(event, str) else event
    zone = UTC if ev.utc else tz or _zone_of(after)
    start = after.replace(tzinfo=zone) if after.tzinfo is None else after.astimezone(zone)
    instant = start.astimezone(UTC)
    naive = start.replace(tzinfo=None, microsecond=0)
    while True:
        naive_next = _next_wallclock(ev, naive)
        if naive_next is None:
            return None
        fired = _instant(naive_next, zone)
        if fired > instant:
            return fired.astimezone(zone)
        # A repeated (fall-back) wall time already passed at its first occurrence: go on.
        naive = naive_next + dt.timedelta(seconds=1)


def _zone_of(after: dt.datetime) -> dt.tzinfo:
    return after.tzinfo if isinstance(after.tzinfo, ZoneInfo) else local_zone()


def _instant(naive: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """Map a wall-clock time to the instant it fires (UTC): first occurrence, or gap end."""
    options = [naive.replace(tzinfo=zone, fold=f) for f in (0, 1)]
    valid = [o.astimezone(UTC) for o in options if _exists(o)]
    if valid:
        return min(valid)
    # In a spring-forward gap: fold=1 lands before it, fold=0 after; find where it ends.
    lo, hi = sorted(int(o.timestamp()) for o in options)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        wall = dt.datetime.fromtimestamp(mid, zone).replace(tzinfo=None)
        lo, hi = (mid, hi) if wall < naive else (lo, mid)
    return dt.datetime.fromtimestamp(hi, UTC)


def _exists(aware: dt.datetime) -> bool:
    back = aware.astimezone(UTC).astimezone(aware.tzinfo)
    return back.replace(tzinfo=None) == aware.replace(tzinfo=None)


class _Never(Exception):
    """Internal: no later time can match (e.g. every listed year has passed)."""


def _next_wallclock(ev: CalendarEvent, t: dt.datetime) -> dt.datetime | None:
    """The first wall-clock time >= ``t`` matching every field (Proxmox's field-wise search).

    Each step moves ``t`` forward to the next candidate of the first field that does not match
    and resets the smaller fields; a few thousand steps cover even ``02-30`` up to MAX_YEAR.
    """
    try:
        for _ in range(10000):
            if t.year > MAX_YEAR:
                return None
            moved = _advance(ev, t)
            if moved is None:
                return t
            t = moved
    except _Never:
        pass
    return None


def _advance(ev: CalendarEvent, t: dt.datetime) -> dt.datetime | None:
    """Move ``t`` to the next candidate if some field does not match; None if all match."""
    if ev.year is not None and t.year not in ev.year:
        nxt = _after(ev.year, t.year)
        if nxt is None:
            raise _Never
        return dt.datetime(nxt, 1, 1)
    if ev.month is not None and t.month not in ev.month:
        nxt = _after(ev.month, t.month)
        return _month_start(t.year, nxt) if nxt is not None else dt.datetime(t.year + 1, 1, 1)
    if ev.day is not None and t.day not in ev.day:
        nxt = _after(ev.day, t.day)
        if nxt is None or nxt > _days_in_month(t.year, t.month):
            return _month_start(t.year, t.month + 1)
        return dt.datetime(t.year, t.month, nxt)
    if ev.weekdays is not None and t.weekday() not in ev.weekdays:
        return _day_start(t) + dt.timedelta(days=1)
    if ev.hour is not None and t.hour not in ev.hour:
        nxt = _after(ev.hour, t.hour)
        day = _day_start(t)
        return day + dt.timedelta(hours=nxt) if nxt is not None else day + dt.timedelta(days=1)
    if ev.minute is not None and t.minute not in ev.minute:
        nxt = _after(ev.minute, t.minute)
        hour = t.replace(minute=0, second=0)
        return hour.replace(minute=nxt) if nxt is not None else hour + dt.timedelta(hours=1)
    if ev.second is not None and t.second not in ev.second:
        nxt = _after(ev.second, t.second)
        minute = t.replace(second=0)
        return minute.replace(second=nxt) if nxt is not None else minute + dt.timedelta(minutes=1)
    return None


def _after(values: tuple[int, ...], current: int) -> int | None:
    i = bisect.bisect_right(values, current)
    return values[i] if i < len(values) else None


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _days_in_month(year: int, month: int) -> int:
    return (_month_start(year, month + 1) - dt.datetime(year, month, 1)).days


def _day_start(t: dt.datetime) -> dt.datetime:
    return t.replace(hour=0, minute=0, second=0)


__all__ = [
    "CalendarError",
    "CalendarEvent",
    "check_event",
    "local_zone",
    "next_event",
    "parse_event",
]
