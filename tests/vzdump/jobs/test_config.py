"""jobs.cfg (vzdump §8): golden round trips, validation, the params a job run uses."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from shared import paths
from shared.errors import ConfigError, ParamError
from shared.formats.sectionconfig import Section
from vzdump import calendar
from vzdump.jobs import config, manage
from vzdump.jobs.config import make_job, parse_jobs, read_jobs, render_jobs, write_jobs

GOLDEN = Path(__file__).parent / "golden"
UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
NOW = dt.datetime(2030, 1, 5, 10, 0, tzinfo=dt.UTC)


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["jobs.cfg", "jobs-multi.cfg"])
def test_golden_round_trip_through_the_file(ctroot: Path, name: str) -> None:
    target = paths.jobs_cfg()
    target.parent.mkdir(parents=True)
    target.write_bytes((GOLDEN / name).read_bytes())
    cfg = read_jobs(strict=True)
    target.write_text("")  # prove the next write really rewrites the file
    write_jobs(cfg)
    assert target.read_bytes() == (GOLDEN / name).read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["jobs.cfg"]  # no temp file left


def test_spec_example_values() -> None:
    cfg = parse_jobs(golden("jobs.cfg"), strict=True)
    (job,) = cfg.sections
    assert (job.type, job.id) == ("vzdump", "backup-5f0c2e1a-77d1")
    assert job.props == {
        "schedule": "sat 02:00",
        "all": "1",  # vzdump options are kept as written (judged by check_job)
        "enabled": True,
        "mode": "snapshot",
        "compress": "zstd",
        "storage": "local",
        # property strings stay strings, exactly as written
        "prune-backups": "keep-daily=7,keep-last=3,keep-weekly=4",
        "notes-template": "{{guestname}}",
        "comment": "nightly CTs",
    }
    assert config.schedule(job) == calendar.parse_event("sat 02:00")


def test_multi_stanza_values() -> None:
    cfg = parse_jobs(golden("jobs-multi.cfg"), strict=True)
    web = cfg.get("weekday-web")
    assert web is not None
    assert web.props["exclude-path"] == ["/var/cache/", "/srv/big files"]
    assert web.props["prune-backups"] == "keep-last=3,keep-daily=7"  # not re-ordered
    assert web.props["comment"] == "web: nightly für alle"
    assert (config.is_enabled(web), config.repeat_missed(web)) == (False, True)
    monthly = cfg.get("monthly-all")
    assert monthly is not None
    assert (config.is_enabled(monthly), config.repeat_missed(monthly)) == (True, False)


def test_new_stanzas_are_separated_by_a_blank_line() -> None:
    cfg = parse_jobs(golden("jobs.cfg"))
    cfg.add(make_job("second", {"schedule": "21:00", "vmid": "100", "comment": "a:b"}))
    assert render_jobs(cfg) == golden("jobs.cfg") + (
        "\nvzdump: second\n\tschedule 21:00\n\tvmid 100\n\tcomment a%3Ab\n"
    )


def test_read_missing_file_has_no_jobs(ctroot: Path) -> None:
    cfg = read_jobs()
    assert (cfg.sections, cfg.warnings) == ([], [])


# --- validation -----------------------------------------------------------------------------

BAD_FILES = [
    (
        "vzdump: j1\n\tschedule sat 02:00\n\tall 1\n\tfoo bar\n",
        "line 4: vzdump 'j1' - 'foo': property is not defined in schema",
    ),
    (
        "vzdump: j1\n\tschedule mon..xyz\n\tall 1\n",
        "line 2: vzdump 'j1' - 'schedule': value 'mon..xyz' is not a valid calendar event: "
        "unknown weekday 'xyz'",
    ),
    (
        "vzdump: j1\n\tschedule " + "0," * 64 + "0\n\tall 1\n",
        "line 2: vzdump 'j1' - 'schedule': value may only be 128 characters long",
    ),
    (
        "vzdump: j1\n\tschedule sat\n\tall 1\n\tmode fast\n",
        "job 'j1': mode: value 'fast' does not have a value in the enumeration "
        "'snapshot, suspend, stop'",
    ),
    (
        "vzdump: j1\n\tschedule sat\n\tall 1\n\tprune-backups keep-all=1,keep-last=1\n",
        "job 'j1': prune-backups: keep-all cannot be set together with other options.",
    ),
    (
        "vzdump: j1\n\tschedule sat\n\tvmid 100,abc\n",
        "job 'j1': vmid: strange VM ID 'abc'",
    ),
    (
        "vzdump: j1\n\tall 1\n",
        "skip section 'j1': vzdump 'j1': missing value for required option 'schedule'",
    ),
    (
        "vzdump: 1job\n\tschedule sat\n\tall 1\n",
        "skip section '1job': invalid ID '1job': invalid format - invalid configuration ID '1job'",
    ),
    (
        "vzdump: j1\n\tschedule sat\n\tvmid 100\n\tall 1\n",
        "job 'j1': all: option conflicts with option 'vmid'",
    ),
    (
        "vzdump: j1\n\tschedule sat\n\tmode stop\n",
        "job 'j1': vmid: property is missing",
    ),
    ("backup: j1\n\tschedule sat\n", "line 1: ignore config section 'backup: j1' - unknown type"),
]


@pytest.mark.parametrize(("text", "warning"), BAD_FILES)
def test_bad_files(text: str, warning: str) -> None:
    cfg = parse_jobs(text)
    assert warning in cfg.warnings
    with pytest.raises(ConfigError) as info:
        parse_jobs(text, strict=True)
    # strict mode raises the same message (without the "skip section" framing)
    assert str(info.value) in warning


def test_bad_section_is_dropped_and_the_rest_kept() -> None:
    cfg = parse_jobs("vzdump: bad\n\tall 1\n\nvzdump: good\n\tschedule daily\n\tall 1\n")
    assert [s.id for s in cfg.sections] == ["good"]


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("prune-backups keep-last=30,keep-dayly=7", "prune-backups: invalid format"),
        ("remove nope", "remove: type check ('boolean') failed - got 'nope'"),
        ("storage bad/name", "storage: "),
        ("mailto bad!x", "mailto: invalid format"),
    ],
)
def test_a_mistyped_value_keeps_its_job_from_running_and_from_being_lost(
    ctroot: Path, line: str, warning: str
) -> None:
    """Dropped with a warning, a mistyped retention ran the job with the storage's stricter one
    (removing backups), and the next rewrite of the file lost the line for good."""
    text = f"vzdump: keep\n\tschedule sat 02:00\n\tvmid 100\n\t{line}\n"
    paths.jobs_cfg().parent.mkdir(parents=True)
    paths.jobs_cfg().write_text(text)
    cfg = read_jobs()
    (job,) = cfg.sections
    assert cfg.warnings and cfg.warnings[0].startswith(f"job 'keep': {warning}"), cfg.warnings
    with pytest.raises(ParamError):
        config.job_params(job)  # what a run starts with: the job fails, nothing is pruned
    with pytest.raises(ConfigError, match=f"job 'keep': {warning[:10]}"):
        write_jobs(cfg)
    assert paths.jobs_cfg().read_text() == text


def test_job_that_cannot_run_is_kept_but_not_written(ctroot: Path) -> None:
    cfg = parse_jobs("vzdump: both\n\tschedule daily\n\tall 1\n\tvmid 100\n")
    assert [s.id for s in cfg.sections] == ["both"]
    assert cfg.warnings == ["job 'both': all: option conflicts with option 'vmid'"]
    with pytest.raises(ConfigError, match="option conflicts with option 'vmid'"):
        write_jobs(cfg)
    assert not paths.jobs_cfg().exists()


def test_make_job_rejects_unknown_and_bad_options_naming_them() -> None:
    with pytest.raises(ParamError) as info:
        make_job("j1", {"schedule": "sat", "all": "1", "frobnicate": "1", "ionice": "9"})
    assert info.value.errors == {
        "frobnicate": UNKNOWN,
        "ionice": "value must have a maximum value of 8",
    }


def test_make_job_checks_the_selection_and_schedule() -> None:
    with pytest.raises(ConfigError, match="missing value for required option 'schedule'"):
        make_job("j1", {"all": "1"})
    with pytest.raises(ConfigError, match="pool: option conflicts with option 'vmid'"):
        make_job("j1", {"schedule": "sat", "vmid": "100", "pool": "web"})
    with pytest.raises(ParamError) as info:
        make_job("j1", {"schedule": "mon..xyz", "all": True})
    assert info.value.errors == {
        "schedule": "value 'mon..xyz' is not a valid calendar event: unknown weekday 'xyz'"
    }


def test_write_refuses_an_invalid_job_and_keeps_the_old_file(ctroot: Path) -> None:
    target = paths.jobs_cfg()
    target.parent.mkdir(parents=True)
    target.write_text(golden("jobs.cfg"))
    cfg = read_jobs()
    cfg.sections.append(Section("vzdump", "broken", {"all": True}))  # no schedule
    with pytest.raises(ConfigError, match="missing value for required option 'schedule'"):
        write_jobs(cfg)
    cfg.sections[-1] = Section("vzdump", "broken", {"schedule": "sat", "bogus": "1"})
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        write_jobs(cfg)
    assert target.read_text() == golden("jobs.cfg")
    assert [p.name for p in target.parent.iterdir()] == ["jobs.cfg"]


def test_new_job_ids_are_valid_config_ids() -> None:
    ids = {config.new_job_id() for _ in range(20)}
    assert len(ids) == 20
    for job_id in ids:
        assert job_id.startswith("backup-") and len(job_id) == 20
        make_job(job_id, {"schedule": "sat 02:00", "all": "1"})


# --- running a job ----------------------------------------------------------------------------


def test_job_params_drop_job_keys_and_add_job_id_and_quiet() -> None:
    cfg = parse_jobs(golden("jobs-multi.cfg"))
    web = cfg.get("weekday-web")
    assert web is not None
    assert config.job_params(web) == {
        "vmid": [100, 101],
        "mode": "stop",
        "exclude-path": ["/var/cache/", "/srv/big files"],
        "prune-backups": {"keep-last": 3, "keep-daily": 7},
        "performance": {"max-workers": 4},
        "job-id": "weekday-web",
        "quiet": True,
    }


# --- the legacy starttime + dow form -------------------------------------------------------


@pytest.mark.parametrize(
    ("starttime", "dow", "schedule"),
    [
        ("02:00", "mon,tue,wed,thu,fri,sat,sun", "02:00"),
        ("02:00", "*", "02:00"),
        ("02:00", "sat", "sat 02:00"),
        ("21:30", "mon-fri", "mon,tue,wed,thu,fri 21:30"),
        ("21:30", "sun,mon", "mon,sun 21:30"),
        ("04:15", "1,7", "mon,sun 04:15"),
    ],
)
def test_legacy_schedule(starttime: str, dow: str, schedule: str) -> None:
    assert config.legacy_schedule(starttime, dow) == schedule
    calendar.check_event(schedule)


def test_legacy_schedule_rejects_bad_days() -> None:
    with pytest.raises(ConfigError, match="unable to parse day of week 'someday'"):
        config.legacy_schedule("02:00", "someday")


def test_parallel_is_a_job_key() -> None:
    """A job may bound its own workers (``parallel 2``); the params a run gets carry it."""
    cfg = parse_jobs(
        "vzdump: nightly\n\tschedule 02:00\n\tall 1\n\tparallel 2\n\tstorage local\n", strict=True
    )
    (job,) = cfg.sections
    assert config.job_params(job)["parallel"] == 2


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("\tenabled disabled\n", "'enabled': type check ('boolean') failed - got 'disabled'"),
        ("\trepeat-missed maybe\n", "'repeat-missed': type check ('boolean') failed"),
        ("\tenabled 0\n\tenabled 1\n", "duplicate attribute 'enabled' in section 'off'"),
        ("\tfrobnicate 1\n", "'frobnicate': property is not defined in schema"),
    ],
)
def test_a_job_key_that_does_not_parse_keeps_the_job_from_running(
    ctroot: Path, lines: str, problem: str
) -> None:
    """``enabled disabled`` was dropped with a warning: the job ran on its schedule (a stop
    mode job stopped the guests its admin had switched off), and the next ``job add`` wrote
    the file without the line."""
    text = f"vzdump: off\n\tschedule *:0/5\n{lines}\tvmid 100\n"
    paths.jobs_cfg().parent.mkdir(parents=True)
    paths.jobs_cfg().write_text(text)
    (job,) = read_jobs().sections
    with pytest.raises(
        ConfigError, match=rf"^job 'off': jobs.cfg line [34]: .*{re.escape(problem)}"
    ):
        config.check_job(job)  # what a run starts with: the job fails as 'unable to start'
    with pytest.raises(ConfigError, match=re.escape(problem)) as err:
        manage.add_job("other", {"schedule": "daily", "vmid": "101"}, NOW)
    assert err.value.hint == config.REWRITE_REFUSED
    assert paths.jobs_cfg().read_text() == text


@pytest.mark.parametrize(
    "text",
    [
        "vzdump: a\n\tschedule daily\n\tvmid 100\n",  # an ID too short: the section is skipped
        "vzdump: nosched\n\tvmid 100\n",
        "vzdump: twice\n\tschedule daily\n\tvmid 100\n\nvzdump: twice\n\tschedule sat\n\tall 1\n",
        "vzdump: bad\n\tschedule mon..fri 25:00\n\tvmid 100\n",
        "garbage line\n",
    ],
)
def test_a_file_that_lost_a_section_or_line_is_not_rewritten(ctroot: Path, text: str) -> None:
    """``job add``, ``set`` and ``remove`` wrote the file again without what the parse had
    skipped: whole jobs vanished, with exit 0."""
    paths.jobs_cfg().parent.mkdir(parents=True)
    paths.jobs_cfg().write_text(text)
    with pytest.raises(ConfigError) as err:
        manage.add_job("other", {"schedule": "daily", "vmid": "101"}, NOW)
    assert err.value.hint == config.REWRITE_REFUSED
    assert paths.jobs_cfg().read_text() == text
    manage.job_rows(NOW)  # what job list and the scheduler read: no job without a schedule
