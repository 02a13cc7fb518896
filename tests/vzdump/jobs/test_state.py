"""Per-job state files (vzdump §8): lifecycle, atomic writes, tolerant reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared import paths
from shared.formats.types import FormatError
from tests.bounded import returns_within
from vzdump.jobs import state
from vzdump.jobs.state import JobState


def test_missing_file_reads_as_created(ctroot: Path) -> None:
    st = state.read_state("backup-1")
    assert st == JobState(state="created", time=0)
    assert st.last_runtime() == 0


def test_path_is_under_the_jobs_state_dir(ctroot: Path) -> None:
    assert state.state_path("backup-1") == paths.jobs_state_dir() / "vzdump-backup-1.json"
    assert str(state.state_path("backup-1")).startswith(str(ctroot))


@pytest.mark.parametrize("bad", ["../etc/passwd", ".hidden", "a/b", ""])
def test_job_ids_cannot_escape_the_directory(ctroot: Path, bad: str) -> None:
    with pytest.raises(FormatError):
        state.state_path(bad)


def test_lifecycle(ctroot: Path) -> None:
    job = "backup-1"
    created = state.create_state(job, now=1000)
    assert created.last_runtime() == 1000
    path = state.state_path(job)
    assert json.loads(path.read_text()) == {"state": "created", "time": 1000}

    state.mark_starting(job, now=2000)
    assert state.read_state(job).state == "starting"

    upid = "UPID:pve1:00001234:00005678:000007D0:vzdump::root@pam:"
    state.mark_started(job, upid=upid, pid=4660, now=2001)
    st = state.read_state(job)
    assert (st.state, st.upid, st.pid, st.started, st.last_runtime()) == (
        "started",
        upid,
        4660,
        2001,
        2001,
    )

    state.mark_stopped(job, "OK", now=2100)
    st = state.read_state(job)
    assert st == JobState(
        state="stopped", time=2001, upid=upid, pid=4660, started=2001, finished=2100, msg="OK"
    )
    assert st.last_runtime() == 2001  # the next event counts from the start of the last run
    assert json.loads(path.read_text()) == {
        "state": "stopped",
        "time": 2001,
        "upid": upid,
        "pid": 4660,
        "started": 2001,
        "finished": 2100,
        "msg": "OK",
    }
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_config_change_moves_the_last_runtime(ctroot: Path) -> None:
    job = "backup-2"
    state.create_state(job, now=50)
    state.mark_started(job, pid=1, now=100)
    state.mark_stopped(job, "job errors", now=200)
    st = state.mark_updated(job, now=500)
    assert (st.msg, st.last_runtime()) == ("job errors", 500)
    assert state.read_state(job).last_runtime() == 500
    # the next run replaces both the result and the mark
    st = state.mark_started(job, pid=2, now=900)
    assert (st.updated, st.msg, st.last_runtime()) == (None, None, 900)


def test_updates_of_a_removed_job_write_nothing(ctroot: Path) -> None:
    state.create_state("backup-2", now=50)
    state.remove_state("backup-2")
    state.mark_starting("backup-2", now=100)
    state.mark_started("backup-2", pid=1, now=100)
    state.mark_stopped("backup-2", "OK", now=200)
    state.mark_updated("backup-2", now=300)
    assert not state.state_path("backup-2").exists()


def test_failed_start(ctroot: Path) -> None:
    job = "backup-3"
    state.create_state(job, now=10)
    state.mark_starting(job, now=20)
    st = state.mark_stopped(job, "unable to start: no such command", now=21)
    assert (st.state, st.time, st.started, st.finished) == ("stopped", 21, None, 21)
    assert st.last_runtime() == 21


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[1, 2]",
        '"started"',
        '{"state": "exploded", "time": 1}',
        '{"state": "started", "time": "yesterday"}',
        '{"state": "started", "pid": true}',
        '{"time": 5}',
        # times no datetime can hold (fromtimestamp raised in every scheduler pass)
        '{"state": "stopped", "time": Infinity}',
        '{"state": "stopped", "time": -Infinity}',
        '{"state": "stopped", "time": NaN}',
        '{"state": "stopped", "time": 1e300}',
        '{"state": "stopped", "updated": 99999999999999999999}',
        '{"state": "stopped", "updated": -99999999999999}',
        '{"state": "stopped", "started": 253402300800}',
        '{"state": "started", "pid": 0}',
        '{"state": "started", "pid": 99999999999}',
        "[" * 100_000,
    ],
)
def test_corrupt_file_reads_as_created(ctroot: Path, content: str) -> None:
    path = state.state_path("backup-4")
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    assert state.read_state("backup-4") == JobState()
    assert state.load_state("backup-4") is None  # told apart from a good state


def test_load_state_tells_missing_and_good_apart(ctroot: Path) -> None:
    assert state.load_state("backup-4") is None
    state.create_state("backup-4", now=state.EPOCH_MAX)
    assert state.load_state("backup-4") == JobState(state="created", time=state.EPOCH_MAX)


def test_a_last_runtime_ahead_of_now_is_from_the_future(ctroot: Path) -> None:
    st = JobState(state="stopped", started=10_000)
    assert not st.from_future(10_000 - state.CLOCK_STEP_BACK)  # the clock was set back since
    assert st.from_future(10_000 - state.CLOCK_STEP_BACK - 1)


def test_invalid_utf8_reads_as_created(ctroot: Path) -> None:
    path = state.state_path("backup-4")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"state": "\xff\xfe"}')
    assert state.read_state("backup-4") == JobState()


def test_unreadable_file_reads_as_created(ctroot: Path) -> None:
    path = state.state_path("backup-5")
    path.mkdir(parents=True)  # a directory where the file should be
    assert state.read_state("backup-5") == JobState()


def test_a_fifo_in_place_of_the_file_reads_as_created_at_once(ctroot: Path) -> None:
    """The read waited on a FIFO for a writer: vzdump job list and the scheduler hung."""
    path = state.state_path("backup-6")
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert returns_within(5, lambda: state.load_state("backup-6")) is None
    assert state.read_state("backup-6") == JobState()


def test_proxmox_style_file_is_read(ctroot: Path) -> None:
    path = state.state_path("backup-6")
    path.parent.mkdir(parents=True)
    path.write_text('{"state":"stopped","msg":"OK","upid":"UPID:x","updated":1700000000.0}')
    st = state.read_state("backup-6")
    assert (st.state, st.msg, st.upid, st.last_runtime()) == ("stopped", "OK", "UPID:x", 1700000000)


def test_remove_state(ctroot: Path) -> None:
    state.create_state("backup-7", now=1)
    state.remove_state("backup-7")
    assert not state.state_path("backup-7").exists()
    state.remove_state("backup-7")  # already gone: no error
