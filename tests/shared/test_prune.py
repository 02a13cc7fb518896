"""Retention: normalisation (vzdump §5.1), marking (§5.2), the remove=0 limit (§5.4)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest

from shared import prune
from shared.formats.propstring import PropertyStringError
from shared.formats.types import FormatError
from shared.prune import PruneCandidate, PruneEntry

VIENNA = ZoneInfo("Europe/Vienna")


def ts(text: str, tz: dt.tzinfo = VIENNA, fold: int = 0) -> int:
    """Epoch of a local wall-clock time ``YYYY-MM-DD HH:MM``."""
    naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M")
    return int(naive.replace(tzinfo=tz, fold=fold).timestamp())


def run(opts: str, rows: Sequence[tuple[str, str | None]]) -> list[str]:
    entries = [PruneEntry(ts(when), pre) for when, pre in rows]
    return prune.mark(entries, prune.parse_prune_backups(opts), VIENNA)


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("keep-last=3", {"keep-last": 3}),
        ("keep-all=1", {"keep-all": True}),
        ("keep-all=0", {"keep-all": True}),
        ("keep-last=0,keep-daily=0", {"keep-all": True}),
        ("keep-all=0,keep-last=10", {"keep-last": 10}),
        ("keep-last=3,keep-daily=0", {"keep-last": 3, "keep-daily": 0}),
        (
            "keep-yearly=1,keep-monthly=2,keep-weekly=3,keep-daily=4,keep-hourly=5,keep-last=6",
            {
                "keep-yearly": 1,
                "keep-monthly": 2,
                "keep-weekly": 3,
                "keep-daily": 4,
                "keep-hourly": 5,
                "keep-last": 6,
            },
        ),
    ],
)
def test_normalize(raw: str, expected: dict[str, object]) -> None:
    assert prune.parse_prune_backups(raw) == expected


def test_keep_all_with_others_is_an_error() -> None:
    with pytest.raises(FormatError) as info:
        prune.parse_prune_backups("keep-all=1,keep-last=2")
    assert str(info.value) == "keep-all cannot be set together with other options."


def test_unknown_key_is_a_format_error() -> None:
    with pytest.raises(PropertyStringError) as info:
        prune.parse_prune_backups("keep-last=1,keep-foo=2")
    assert info.value.details == {
        "keep-foo": "property is not defined in schema and the schema does not allow "
        "additional properties"
    }


def test_negative_count_is_rejected() -> None:
    with pytest.raises(PropertyStringError) as info:
        prune.parse_prune_backups("keep-last=-1")
    assert info.value.details == {"keep-last": "value must have a minimum value of 0"}


def test_render_and_log_string_sort_keys() -> None:
    opts = prune.parse_prune_backups("keep-weekly=4,keep-last=3,keep-daily=7")
    assert prune.render(opts) == "keep-daily=7,keep-last=3,keep-weekly=4"
    assert prune.log_string(opts) == "keep-daily=7, keep-last=3, keep-weekly=4"
    assert prune.log_string({"keep-all": True}) == "keep-all=1"


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        ("keep-last=2", 2),
        ("keep-last=2,keep-daily=3,keep-yearly=1", 6),
        ("keep-last=3,keep-daily=0", 3),
        ("keep-all=1", None),
        ("keep-last=0", None),
    ],
)
def test_retention_limit_is_the_sum_of_keep_values(raw: str, limit: int | None) -> None:
    assert prune.retention_limit(prune.parse_prune_backups(raw)) == limit


# --- marking, one option at a time -------------------------------------------------------------

K, R = "keep", "remove"

CASES = [
    # keep-last: the N newest, by ctime
    (
        "keep-last=2",
        ["2024-01-04 02:00", "2024-01-03 02:00", "2024-01-02 02:00", "2024-01-01 02:00"],
        [K, K, R, R],
    ),
    # equal ctimes share one keep-last slot: the second is removed
    (
        "keep-last=2",
        ["2024-01-02 02:00", "2024-01-02 02:00", "2024-01-01 02:00"],
        [K, R, K],
    ),
    # keep-hourly: newest backup of each of the 2 newest hours
    (
        "keep-hourly=2",
        ["2024-01-01 10:50", "2024-01-01 10:10", "2024-01-01 09:30", "2024-01-01 08:59"],
        [K, R, K, R],
    ),
    # keep-daily: days in local time, across midnight
    (
        "keep-daily=2",
        ["2024-01-02 00:10", "2024-01-01 23:50", "2024-01-01 12:00", "2023-12-31 23:59"],
        [K, K, R, R],
    ),
    # keep-weekly: ISO week-year, so 2024-12-30 (Mon) is in 2025-W01 with 2025-01-02
    (
        "keep-weekly=3",
        [
            "2025-01-02 02:00",
            "2024-12-30 02:00",
            "2024-12-29 02:00",
            "2024-12-23 02:00",
            "2024-12-22 02:00",
            "2024-12-16 02:00",
        ],
        [K, R, K, R, K, R],
    ),
    # keep-weekly: 2021-01-03 (Sun) and 2020-12-28 (Mon) are both 2020-W53; weeks start Monday
    (
        "keep-weekly=2",
        ["2021-01-04 00:00", "2021-01-03 23:59", "2020-12-28 00:00", "2020-12-27 23:59"],
        [K, K, R, R],
    ),
    # keep-monthly, with a leap day
    (
        "keep-monthly=2",
        ["2024-03-01 00:00", "2024-02-29 23:59", "2024-02-01 00:00", "2024-01-31 23:59"],
        [K, K, R, R],
    ),
    # keep-yearly: calendar years (not ISO years)
    (
        "keep-yearly=2",
        ["2024-01-01 00:00", "2023-12-31 23:59", "2023-06-01 12:00", "2022-01-01 00:00"],
        [K, K, R, R],
    ),
    # more slots than backups: everything is kept
    ("keep-daily=10", ["2024-01-02 00:00", "2024-01-01 00:00"], [K, K]),
]


@pytest.mark.parametrize(("opts", "times", "expected"), CASES)
def test_single_option(opts: str, times: list[str], expected: list[str]) -> None:
    assert run(opts, [(t, None) for t in times]) == expected


def test_input_order_is_kept_in_the_result() -> None:
    rows = [("2024-01-01 02:00", None), ("2024-01-03 02:00", None), ("2024-01-02 02:00", None)]
    assert run("keep-last=2", rows) == [R, K, K]


# --- combinations: a later option only sees what earlier ones did not cover -------------------


def test_daily_after_last_skips_the_covered_day() -> None:
    rows = [
        ("2024-01-03 10:00", None),  # keep-last
        ("2024-01-03 08:00", None),  # day covered by keep-last: daily skips it -> remove
        ("2024-01-02 12:00", None),  # daily 1
        ("2024-01-02 09:00", None),  # same day, newer one taken -> remove
        ("2024-01-01 12:00", None),  # daily 2
    ]
    assert run("keep-last=1,keep-daily=2", rows) == [K, R, K, R, K]


def test_daily_weekly_monthly_chain() -> None:
    rows = [
        ("2024-03-14 02:00", None),  # daily (W11, March)
        ("2024-03-13 02:00", None),  # W11 and March covered -> remove
        ("2024-03-05 02:00", None),  # weekly 1 (W10)
        ("2024-03-01 02:00", None),  # weekly 2 (W09)
        ("2024-02-20 02:00", None),  # weekly full, stop; monthly 1 (February)
        ("2024-01-15 02:00", None),  # monthly 2 (January)
        ("2023-12-15 02:00", None),  # nothing left -> remove
    ]
    assert run("keep-daily=1,keep-weekly=2,keep-monthly=2", rows) == [K, R, K, K, K, K, R]


def test_all_options_together() -> None:
    rows = [
        ("2024-06-10 12:00", None),  # last
        ("2024-06-10 11:00", None),  # hourly
        ("2024-06-10 10:30", None),  # same day as kept ones; daily skips -> remove
        ("2024-06-09 02:00", None),  # daily (Sunday, W23)
        ("2024-06-03 02:00", None),  # W23 is covered by 06-09 -> remove
        ("2024-05-27 02:00", None),  # weekly (W22)
        ("2024-04-01 02:00", None),  # monthly (April)
        ("2023-05-01 02:00", None),  # yearly (2023)
    ]
    opts = "keep-last=1,keep-hourly=1,keep-daily=1,keep-weekly=1,keep-monthly=1,keep-yearly=1"
    # May is covered by 05-27, so monthly keeps April; 2024 is covered, yearly keeps 2023.
    assert run(opts, rows) == [K, K, R, K, R, K, K, K]


# --- pre-marks --------------------------------------------------------------------------------


def test_protected_and_renamed_are_neither_counted_nor_removed() -> None:
    rows = [
        ("2024-01-06 02:00", None),
        ("2024-01-05 02:00", "protected"),
        ("2024-01-04 02:00", None),
        ("2024-01-03 02:00", None),
        ("2024-01-02 02:00", "renamed"),
    ]
    assert run("keep-last=2", rows) == [K, "protected", K, R, "renamed"]


def test_protected_does_not_cover_its_bucket() -> None:
    rows = [("2024-01-02 10:00", "protected"), ("2024-01-02 09:00", None)]
    assert run("keep-daily=1", rows) == ["protected", K]


def test_keep_all_keeps_everything_but_keeps_pre_marks() -> None:
    rows = [
        ("2024-01-03 02:00", None),
        ("2024-01-02 02:00", "remove"),
        ("2024-01-01 02:00", "protected"),
        ("2023-12-31 02:00", "renamed"),
    ]
    expected = [K, K, "protected", "renamed"]
    assert run("keep-all=1", rows) == expected
    assert run("keep-last=0,keep-daily=0", rows) == expected


# --- local time -------------------------------------------------------------------------------


def test_buckets_use_local_time_not_utc() -> None:
    # 00:30 and 00:10 on 2024-01-02 in Vienna are 23:30 and 23:10 UTC on 01-01: one local day
    entries = [PruneEntry(ts("2024-01-02 00:30")), PruneEntry(ts("2024-01-02 00:10"))]
    opts = {"keep-daily": 2}
    assert prune.mark(entries, opts, VIENNA) == [K, R]
    tokyo = ZoneInfo("Asia/Tokyo")  # 08:30 and 08:10 on 01-02 there: still one day
    assert prune.mark(entries, opts, tokyo) == [K, R]
    # in UTC-10 they are 13:30/13:10 on 01-01: one day too, but a different one than a backup
    # at 2024-01-02 12:00 Vienna (01:00 on 01-02 in UTC-10)
    later = PruneEntry(ts("2024-01-02 12:00"))
    honolulu = ZoneInfo("Pacific/Honolulu")
    assert prune.mark([later, *entries], opts, VIENNA) == [K, R, R]
    assert prune.mark([later, *entries], opts, honolulu) == [K, K, R]


def test_repeated_hour_at_fall_back_is_one_hourly_bucket() -> None:
    first = ts("2024-10-27 02:30", fold=0)  # CEST
    second = ts("2024-10-27 02:30", fold=1)  # CET, one hour later
    assert second - first == 3600
    entries = [PruneEntry(second), PruneEntry(first)]
    assert prune.mark(entries, {"keep-hourly": 2}, VIENNA) == [K, R]


def test_default_zone_is_the_process_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [PruneEntry(ts("2024-01-02 00:30")), PruneEntry(ts("2024-01-01 23:30"))]
    try:
        monkeypatch.setenv("TZ", "Europe/Vienna")
        time.tzset()
        assert prune.mark(entries, {"keep-daily": 2}) == [K, K]
        monkeypatch.setenv("TZ", "UTC")  # both are on 2024-01-01 in UTC
        time.tzset()
        assert prune.mark(entries, {"keep-daily": 2}) == [K, R]
    finally:
        monkeypatch.undo()
        time.tzset()


# --- one guest's backups ----------------------------------------------------------------------


def cand(name: str, when: str, vmid: int = 100, **kw: object) -> PruneCandidate:
    return PruneCandidate(name=name, ctime=ts(when), vmid=vmid, **kw)  # type: ignore[arg-type]


def test_mark_group_acceptance_case_24() -> None:
    # keep-last=2: the new backup plus 3 older ones, one protected and one renamed
    backups = [
        cand("new", "2024-01-06 02:00"),
        cand("old3", "2024-01-05 02:00"),
        cand("old2", "2024-01-04 02:00"),
        cand("old1", "2024-01-03 02:00"),
        cand("prot", "2024-01-05 12:00", protected=True),
        cand("vzdump-lxc-100-mine.tar", "2024-01-07 02:00", std_name=False),
    ]
    result = {c.name: m for c, m in prune.mark_group(backups, {"keep-last": 2}, VIENNA)}
    assert result == {
        "new": K,
        "old3": K,
        "old2": R,
        "old1": R,
        "prot": "protected",
        "vzdump-lxc-100-mine.tar": "renamed",
    }


def test_mark_group_non_standard_vmid_is_never_pruned() -> None:
    # acceptance case 37: vzdump-lxc-99-... is not a standard name (VMIDs have 3 to 9 digits)
    backups = [
        cand("vzdump-lxc-100-2024_01_02-02_00_00.tar", "2024-01-02 02:00"),
        cand("vzdump-lxc-100-2024_01_01-02_00_00.tar", "2024-01-01 02:00"),
        cand("vzdump-lxc-99-2023_01_01-02_00_00.tar", "2023-01-01 02:00", vmid=99, std_name=False),
    ]
    marks = [m for _, m in prune.mark_group(backups, {"keep-last": 1}, VIENNA)]
    assert marks == [K, R, "renamed"]


def test_mark_group_protected_wins_over_renamed() -> None:
    backups = [cand("x", "2024-01-01 02:00", protected=True, std_name=False)]
    assert prune.mark_group(backups, {"keep-last": 1}, VIENNA) == [(backups[0], "protected")]


def test_mark_group_a_failed_read_back_holds_no_keep_slot() -> None:
    backups = [
        cand("new", "2024-01-03 02:00"),
        cand("damaged", "2024-01-02 02:00", failed=True),
        cand("good", "2024-01-01 02:00"),
        cand("damaged-protected", "2023-12-31 02:00", failed=True, protected=True),
    ]
    marks = [m for _, m in prune.mark_group(backups, {"keep-last": 2}, VIENNA)]
    assert marks == [K, "failed", K, "protected"]


def test_mark_group_keeps_guests_apart() -> None:
    backups = [
        cand("a2", "2024-01-02 02:00", vmid=100),
        cand("b2", "2024-01-02 03:00", vmid=101),
        cand("a1", "2024-01-01 02:00", vmid=100),
        cand("b1", "2024-01-01 03:00", vmid=101),
        cand("q1", "2024-01-03 03:00", vmid=100, type="qemu"),
    ]
    result = {c.name: m for c, m in prune.mark_group(backups, {"keep-last": 1}, VIENNA)}
    assert result == {"a2": K, "b2": K, "a1": R, "b1": R, "q1": K}


def test_mark_group_keep_all() -> None:
    backups = [cand("a", "2024-01-02 02:00"), cand("b", "2024-01-01 02:00", protected=True)]
    assert [m for _, m in prune.mark_group(backups, {"keep-all": True})] == [K, "protected"]


def test_acceptance_26_backup_limit_with_remove_0() -> None:
    opts = prune.parse_prune_backups("keep-last=2")
    message = (
        "There is a max backup limit of 2 enforced by the target storage or the vzdump "
        "parameters. Either increase the limit or delete old backups."
    )
    assert prune.backup_limit_error(opts, remove=False, count=2) == message
    assert prune.backup_limit_error(opts, remove=False, count=3) == message
    assert prune.backup_limit_error(opts, remove=False, count=1) is None
    assert prune.backup_limit_error(opts, remove=True, count=5) is None
    assert prune.backup_limit_error({"keep-all": True}, remove=False, count=99) is None
