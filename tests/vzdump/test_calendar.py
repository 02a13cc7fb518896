"""Calendar events (vzdump §8): parsing, validation and the next event, DST included."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from shared.formats.types import FormatError
from vzdump import calendar
from vzdump.calendar import CalendarError, next_event, parse_event

VIENNA = ZoneInfo("Europe/Vienna")
UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = VIENNA, fold: int = 0) -> dt.datetime:
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=tz, fold=fold)


# (event, after, expected next) in Europe/Vienna; 2024-01-01 is a Monday.
NEXT_CASES = [
    # weekdays, times, ranges and lists
    ("sat 02:00", "2024-01-01 00:00", "2024-01-06 02:00"),
    ("sat 02:00", "2024-01-06 02:00", "2024-01-13 02:00"),  # strictly after
    ("sat 02:00", "2024-01-06 01:59:59", "2024-01-06 02:00"),
    ("21:00", "2024-01-01 21:00", "2024-01-02 21:00"),
    ("21:00", "2024-01-01 20:59", "2024-01-01 21:00"),
    ("mon..fri 22:30", "2024-01-05 23:00", "2024-01-08 22:30"),
    ("mon..fri 22:30", "2024-01-02 22:29", "2024-01-02 22:30"),
    ("sat,sun", "2024-01-04 12:00", "2024-01-06 00:00"),
    ("sat,sun", "2024-01-06 00:00", "2024-01-07 00:00"),
    ("fri..mon", "2024-01-02 12:00", "2024-01-05 00:00"),
    ("fri..mon", "2024-01-07 00:00", "2024-01-08 00:00"),  # the range wraps over Sunday
    ("Monday,wed 06:15", "2024-01-01 07:00", "2024-01-03 06:15"),
    ("8,12,17:30", "2024-01-01 12:30", "2024-01-01 17:30"),
    ("12:00:30", "2024-01-01 12:00", "2024-01-01 12:00:30"),
    # dates
    ("*-*-01 03:00", "2024-01-15 00:00", "2024-02-01 03:00"),
    ("*-*-01 03:00", "2024-12-01 03:00", "2025-01-01 03:00"),
    ("*-*-31 03:00", "2024-04-01 00:00", "2024-05-31 03:00"),  # April has no 31st
    ("*-*-31", "2024-01-31 00:00", "2024-03-31 00:00"),  # nor February
    ("*-*-30", "2024-01-30 00:00", "2024-03-30 00:00"),
    ("02-29", "2024-01-01 00:00", "2024-02-29 00:00"),
    ("02-29", "2024-02-29 00:00", "2028-02-29 00:00"),
    ("*-02-29 12:00", "2025-03-01 00:00", "2028-02-29 12:00"),
    ("02-29", "2096-03-01 00:00", "2104-02-29 00:00"),  # 2100 is not a leap year
    ("2024-12-25 08:00", "2024-01-01 00:00", "2024-12-25 08:00"),
    ("2025..2026-01-01", "2024-06-01 00:00", "2025-01-01 00:00"),
    ("2024-07..9-2/2", "2024-07-31 00:00", "2024-08-02 00:00"),
    # weekdays together with dates: both must match
    ("mon *-*-01", "2024-01-01 00:00", "2024-04-01 00:00"),
    ("fri *-*-13 18:00", "2024-01-01 00:00", "2024-09-13 18:00"),
    # repeats in any field
    ("*:0/15", "2024-01-01 10:07", "2024-01-01 10:15"),
    ("*:*/15", "2024-01-01 10:50", "2024-01-01 11:00"),
    ("0/15", "2024-01-01 10:46", "2024-01-01 11:00"),  # a lone field is the minutes
    ("8/2:00", "2024-01-01 09:00", "2024-01-01 10:00"),
    # a repetition of 0 is the start alone, with an end too (proxmox-time's rule)
    ("8/0", "2024-01-01 10:07", "2024-01-01 10:08"),
    ("0..59/0", "2024-01-01 10:07", "2024-01-01 11:00"),
    ("1..5/0:00", "2024-01-01 01:30", "2024-01-02 01:00"),
    ("8/2:00", "2024-01-01 22:30", "2024-01-02 08:00"),
    ("8..17/3:00", "2024-01-01 14:00", "2024-01-01 17:00"),
    ("8..17/3:00", "2024-01-01 17:00", "2024-01-02 08:00"),
    ("*:*:0/20", "2024-01-01 10:00:41", "2024-01-01 10:01:00"),
    ("*-*-1/10", "2024-01-21 00:00", "2024-01-31 00:00"),
    ("*-*/3-01", "2024-01-02 00:00", "2024-04-01 00:00"),
    # a lone number or range is the minutes of every hour
    ("5", "2024-01-01 10:04", "2024-01-01 10:05"),
    ("5", "2024-01-01 10:05", "2024-01-01 11:05"),
    ("8..17", "2024-01-01 10:17", "2024-01-01 11:08"),
    ("*", "2024-01-01 10:17", "2024-01-01 10:18"),
    # keywords
    ("minutely", "2024-01-01 10:17:30", "2024-01-01 10:18"),
    ("hourly", "2024-01-01 10:17", "2024-01-01 11:00"),
    ("daily", "2024-01-01 10:17", "2024-01-02 00:00"),
    ("weekly", "2024-01-03 10:17", "2024-01-08 00:00"),
    ("monthly", "2024-01-03 10:17", "2024-02-01 00:00"),
    ("yearly", "2024-01-03 10:17", "2025-01-01 00:00"),
    ("annually", "2024-01-03 10:17", "2025-01-01 00:00"),
    ("quarterly", "2024-02-10 00:00", "2024-04-01 00:00"),
    ("semiannually", "2024-02-10 00:00", "2024-07-01 00:00"),
    ("semi-annually", "2024-07-01 00:00", "2025-01-01 00:00"),
]


@pytest.mark.parametrize(("event", "after", "expected"), NEXT_CASES)
def test_next_event(event: str, after: str, expected: str) -> None:
    assert next_event(event, at(after)) == at(expected)


def test_sub_second_after_moves_to_the_next_event() -> None:
    after = at("2024-01-01 21:00").replace(microsecond=500000)
    assert next_event("21:00", after) == at("2024-01-02 21:00")


@pytest.mark.parametrize(
    ("event", "after"),
    [
        ("2023-12-25", "2024-01-01 00:00"),  # the only year has passed
        ("2021-02-29", "2020-01-01 00:00"),  # no such day
        ("02-30", "2024-01-01 00:00"),
        ("*-04-31", "2024-01-01 00:00"),
    ],
)
def test_events_that_never_fire(event: str, after: str) -> None:
    assert next_event(event, at(after)) is None


def test_repeated_next_events_walk_forward() -> None:
    t = at("2024-01-01 00:00")
    seen = []
    for _ in range(4):
        nxt = next_event("mon..fri 22:30", t)
        assert nxt is not None
        seen.append(nxt)
        t = nxt
    assert seen == [at(f"2024-01-0{d} 22:30") for d in (1, 2, 3, 4)]


# --- daylight saving time (Europe/Vienna 2024: 03-31 02:00 -> 03:00, 10-27 03:00 -> 02:00) ----


def test_spring_forward_gap_fires_at_the_end_of_the_gap() -> None:
    fired = next_event("02:30", at("2024-03-30 12:00"))
    assert fired == at("2024-03-31 03:00")
    assert fired is not None and fired.utcoffset() == dt.timedelta(hours=2)
    assert next_event("02:30", fired) == at("2024-04-01 02:30")


def test_spring_forward_collapses_skipped_times_into_one_run() -> None:
    first = next_event("*:0/15", at("2024-03-31 01:50"))
    assert first == at("2024-03-31 03:00")  # 02:00..02:45 and 03:00 are one run
    assert next_event("*:0/15", first) == at("2024-03-31 03:15")


def test_spring_forward_does_not_swallow_the_rest_of_the_day() -> None:
    # systemd issue #13745: 02/4:30 skipped every run of the day; here only 02:30 moves
    runs = []
    t = at("2024-03-31 00:00")
    for _ in range(3):
        t = next_event("02/4:30", t)  # type: ignore[assignment]
        runs.append(t)
    assert runs == [at("2024-03-31 03:00"), at("2024-03-31 06:30"), at("2024-03-31 10:30")]


def test_fall_back_fires_a_repeated_time_once() -> None:
    first = next_event("02:30", at("2024-10-26 12:00"))
    assert first == at("2024-10-27 02:30", fold=0)
    assert first is not None and first.utcoffset() == dt.timedelta(hours=2)
    again = next_event("02:30", first)
    assert again == at("2024-10-28 02:30")
    assert again is not None and again.utcoffset() == dt.timedelta(hours=1)


def test_fall_back_after_given_in_the_second_pass() -> None:
    second_pass = at("2024-10-27 02:10", fold=1)  # CET, after the 02:30 CEST run
    assert second_pass.utcoffset() == dt.timedelta(hours=1)
    assert next_event("02:30", second_pass) == at("2024-10-28 02:30")
    assert next_event("03:00", second_pass) == at("2024-10-27 03:00")


def test_fall_back_hourly_does_not_repeat_the_hour() -> None:
    t = at("2024-10-27 01:30")
    runs = []
    for _ in range(3):
        t = next_event("hourly", t)  # type: ignore[assignment]
        runs.append((t.hour, t.utcoffset()))
    h = dt.timedelta(hours=1)
    assert runs == [(2, 2 * h), (3, h), (4, h)]


def test_utc_events_ignore_local_dst() -> None:
    fired = next_event("02:30 UTC", at("2024-03-31 00:00", tz=UTC))
    assert fired == at("2024-03-31 02:30", tz=UTC)
    # the zone of `after` does not matter for a UTC event
    assert next_event("02:30 UTC", at("2024-03-31 00:00")) == at("2024-03-31 02:30", tz=UTC)


def test_naive_after_is_wall_clock_in_the_given_zone() -> None:
    naive = dt.datetime(2024, 3, 30, 12, 0)
    assert next_event("02:30", naive, VIENNA) == at("2024-03-31 03:00")


def test_default_zone_comes_from_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Vienna")
    assert str(calendar.local_zone()) == "Europe/Vienna"
    fired = next_event("02:30", dt.datetime(2024, 3, 30, 12, 0))
    assert fired == at("2024-03-31 03:00")
    monkeypatch.setenv("TZ", ":America/New_York")
    assert str(calendar.local_zone()) == "America/New_York"


def test_result_is_in_the_zone_of_after_when_it_has_one() -> None:
    ny = ZoneInfo("America/New_York")
    fired = next_event("sat 02:00", at("2024-01-01 00:00", tz=ny))
    assert fired == at("2024-01-06 02:00", tz=ny)
    assert fired is not None and fired.tzinfo is ny


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("mon..xyz", "unknown weekday 'xyz'"),
        ("xyz 02:00", "unknown weekday 'xyz'"),
        ("mon,,tue", "missing weekday"),
        ("25:00", "hour 25 out of range 0..23"),
        ("12:60", "minute 60 out of range 0..59"),
        ("12:00:61", "second 61 out of range 0..59"),
        ("17..8", "range start is bigger than end in minute '17..8'"),
        ("", "empty event"),
        ("   ", "empty event"),
        ("*/0", "invalid repetition '*/0' for minute"),
        ("mon 02:00 extra", "unexpected 'extra'"),
        ("2024-13-01", "month 13 out of range 1..12"),
        ("*-*-32", "day 32 out of range 1..31"),
        ("*-00-01", "month 0 out of range 1..12"),
        ("2200-01-01", "year 2200 out of range 0..2199"),
        ("1:2:3:4", "invalid time '1:2:3:4'"),
        ("1-2-3-4", "invalid date '1-2-3-4'"),
        ("8..x", "invalid minute '8..x'"),
        ("sat 2:x", "invalid minute 'x'"),
    ],
)
def test_invalid_events(event: str, reason: str) -> None:
    with pytest.raises(CalendarError) as info:
        parse_event(event)
    assert str(info.value) == f"value '{event}' is not a valid calendar event: {reason}"
    assert isinstance(info.value, FormatError)


@pytest.mark.parametrize(
    "event",
    ["sat 02:00", "21:00", "mon..fri 22:30", "*-*-01 03:00", "sat,sun", "0/15", "hourly",
     "Sat 02:00", "mon,wed..fri 8..17/2:00", "*-*", "12:00 UTC", "DAILY"],
)  # fmt: skip
def test_valid_events(event: str) -> None:
    calendar.check_event(event)


def test_next_event_rejects_invalid_text() -> None:
    with pytest.raises(CalendarError):
        next_event("mon..xyz", at("2024-01-01 00:00"))
