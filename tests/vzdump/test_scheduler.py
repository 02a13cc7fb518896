"""The job scheduler (vzdump §8) with an injected clock and a real runner that records its calls:
due / not due / disabled / other node, a run still going (a real child process), a dead run,
missed runs with and without repeat-missed, concurrent passes, and the state files after each."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import paths, signals
from shared.errors import NotFoundError, StateError
from tests.bounded import returns_within
from vzdump import scheduler
from vzdump.jobs import state
from vzdump.report import GuestResult, JobResult
from vzdump.scheduler import Outcome
from vzdump.upid import make_upid

UTC = dt.UTC
UPID_RE = re.compile(r"UPID:[^:]+:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzdump:backup-a:root@pam:")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ts(text: str) -> int:
    return int(at(text).timestamp())


def write_jobs(*stanzas: str) -> None:
    paths.jobs_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.jobs_cfg().write_text("\n".join(stanzas))


def job(job_id: str = "backup-a", schedule: str = "02:00", **extra: str) -> str:
    lines = [f"vzdump: {job_id}", f"\tschedule {schedule}", "\tvmid 100"]
    lines += [f"\t{key.replace('_', '-')} {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def state_json(job_id: str = "backup-a") -> dict[str, Any]:
    return json.loads(state.state_path(job_id).read_text())


class Recorder:
    """The job runner: records each call and returns a result (optionally failing)."""

    def __init__(self, *, guest_status: str = "ok", error: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.guest_status = guest_status
        self.error = error

    def __call__(self, job_id: str, params: dict[str, Any]) -> JobResult:
        self.calls.append((job_id, params))
        guest = GuestResult(
            100, "web", self.guest_status, 1.0, 10 if self.guest_status == "ok" else None
        )
        return JobResult(job_id, "vzdump 100", 0.0, 1.0, [guest], error=self.error)


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_signal_stops_the_pass_after_the_running_job(ctroot: Path, log: list[str]) -> None:
    """SIGTERM (systemctl stop, a shutdown) while a job runs: the job reports it as its error,
    as Job.run does, and the pass starts no other due job; the handlers are put back."""
    write_jobs(job("backup-a"), job("backup-b"))
    for job_id in ("backup-a", "backup-b"):
        state.create_state(job_id, now=ts("2024-01-05 12:00:00"))
    ran: list[str] = []
    before = signal.getsignal(signal.SIGTERM)

    def runner(job_id: str, params: dict[str, Any]) -> JobResult:
        ran.append(job_id)
        with signals.interruptible():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
            except KeyboardInterrupt:
                return JobResult(job_id, "vzdump 100", 0.0, 1.0, [], error="interrupted by signal")
        raise AssertionError("the signal did not interrupt the job")

    with pytest.raises(KeyboardInterrupt):
        scheduler.run_due(at("2024-01-06 02:00:30"), runner=runner, log=log.append)
    assert ran == ["backup-a"]
    assert state_json("backup-a")["msg"] == "interrupted by signal"
    assert "started" not in state_json("backup-b")
    assert log[-1] == "scheduler: interrupted by signal - no further job is started"
    assert signal.getsignal(signal.SIGTERM) == before


# --- the basic decisions ----------------------------------------------------------------------


def test_due_job_runs_once_with_job_params(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(mode="stop"))
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    runner = Recorder()
    now = at("2024-01-06 02:00:30")
    assert scheduler.run_due(now, runner=runner, log=log.append) == [("backup-a", Outcome.OK)]
    ((job_id, params),) = runner.calls
    assert job_id == "backup-a"
    assert params == {"vmid": [100], "mode": "stop", "job-id": "backup-a", "quiet": True}
    st = state_json()
    assert UPID_RE.fullmatch(st.pop("upid"))
    assert st == {
        "state": "stopped",
        "time": ts("2024-01-06 02:00:30"),
        "pid": os.getpid(),
        "started": ts("2024-01-06 02:00:30"),
        "finished": ts("2024-01-06 02:00:30"),
        "msg": "OK",
    }
    assert any("starting" in line for line in log) and log[-1] == "job 'backup-a': finished - OK"
    # the next event counts from this start: a minute later nothing is due
    again = scheduler.run_due(at("2024-01-06 02:01:30"), runner=runner, log=log.append)
    assert again == [("backup-a", Outcome.NOT_DUE)] and len(runner.calls) == 1


def test_not_due_leaves_the_state_alone(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    before = state.state_path("backup-a").read_text()
    runner = Recorder()
    result = scheduler.run_due(at("2024-01-06 01:59:59"), runner=runner, log=log.append)
    assert result == [("backup-a", Outcome.NOT_DUE)]
    assert runner.calls == [] and state.state_path("backup-a").read_text() == before


def test_a_new_job_counts_from_when_it_is_first_seen(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    runner = Recorder()
    assert scheduler.run_due(at("2024-01-06 01:00:00"), runner=runner, log=log.append) == [
        ("backup-a", Outcome.NOT_DUE)
    ]
    assert state_json() == {"state": "created", "time": ts("2024-01-06 01:00:00")}
    scheduler.run_due(at("2024-01-06 02:00:10"), runner=runner, log=log.append)
    assert len(runner.calls) == 1


def test_a_job_removed_while_it_runs_leaves_no_state(ctroot: Path, log: list[str]) -> None:
    """`job remove` during the run: its end writes no state back. A state left there made the
    ID, added again weeks later, start at once at 10:00, off its 02:00 schedule."""
    from vzdump.jobs import manage

    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    recorder = Recorder()

    def runner(job_id: str, params: dict[str, Any]) -> JobResult:
        manage.remove_job(job_id)
        return recorder(job_id, params)

    assert scheduler.run_due(at("2024-01-06 02:00:10"), runner=runner, log=log.append) == [
        ("backup-a", Outcome.OK)
    ]
    assert not state.state_path("backup-a").exists()
    write_jobs(job())  # the same ID, three weeks later
    out = scheduler.run_due(at("2024-01-27 10:00:30"), runner=recorder, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)] and len(recorder.calls) == 1
    assert state_json() == {"state": "created", "time": ts("2024-01-27 10:00:30")}


def test_a_clock_past_2106_runs_a_job_once_a_night(ctroot: Path, log: list[str]) -> None:
    """A hardware clock reset to garbage: the states written then must read back, or each job
    ran in every pass (and its retention pruned a backup a minute)."""
    write_jobs(job())
    runner = Recorder()
    for when, outcome in (
        ("2107-01-01 01:00:00", Outcome.NOT_DUE),
        ("2107-01-01 02:00:10", Outcome.OK),
        ("2107-01-01 02:01:10", Outcome.NOT_DUE),
        ("2107-01-01 02:02:10", Outcome.NOT_DUE),
    ):
        assert scheduler.run_due(at(when), runner=runner, log=log.append) == [
            ("backup-a", outcome)
        ], (when, log)
    assert len(runner.calls) == 1 and not any("unreadable" in line for line in log), log
    assert state_json()["started"] == ts("2107-01-01 02:00:10")


def test_disabled_job_is_skipped_and_reenabling_counts_from_then(
    ctroot: Path, log: list[str]
) -> None:
    state.create_state("backup-a", now=ts("2024-01-04 12:00:00"))
    write_jobs(job(enabled="0"))
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-05 02:00:10"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.DISABLED)] and runner.calls == []
    # enabled again at 03:00: the 02:00 event of that day is not run late
    write_jobs(job(enabled="1"))
    out = scheduler.run_due(at("2024-01-05 03:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)]
    assert state_json()["updated"] == ts("2024-01-05 03:00:00")
    assert "schedule or enabled changed" in log[-1]
    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)]
    assert "updated" not in state_json()  # a run replaces the change mark


def test_schedule_change_counts_from_the_change(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(schedule="02:00"))
    state.create_state("backup-a", now=ts("2024-01-04 12:00:00"))
    runner = Recorder()
    scheduler.run_due(at("2024-01-05 01:00:00"), runner=runner, log=log.append)  # records it
    write_jobs(job(schedule="00:30"))
    out = scheduler.run_due(at("2024-01-05 01:01:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)]  # today's 00:30 was before the change
    assert state_json()["updated"] == ts("2024-01-05 01:01:00")


def test_other_node_is_skipped_and_own_node_runs(ctroot: Path, log: list[str]) -> None:
    write_jobs(
        job("backup-a", node="othernode"),
        job("backup-b", node=paths.node_name()),
        job("backup-c"),
    )
    for job_id in ("backup-a", "backup-b", "backup-c"):
        state.create_state(job_id, now=ts("2024-01-05 12:00:00"))
    state.remove_state("backup-a")
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 02:00:05"), runner=runner, log=log.append)
    assert out == [
        ("backup-a", Outcome.OTHER_NODE),
        ("backup-b", Outcome.OK),
        ("backup-c", Outcome.OK),
    ]
    assert [c[0] for c in runner.calls] == ["backup-b", "backup-c"]  # sorted, one at a time
    assert not state.state_path("backup-a").exists()  # another node's job is not touched


# --- results ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runner", "msg"),
    [
        (Recorder(guest_status="err"), "job errors"),
        (Recorder(error="job-start hook failed"), "job-start hook failed"),
        (
            Recorder(error="could not activate storage 'x'\ntmpdir missing"),
            "could not activate storage 'x'",
        ),
    ],
)
def test_failed_runs_record_their_message(
    ctroot: Path, log: list[str], runner: Recorder, msg: str
) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.FAILED)]
    assert (state_json()["state"], state_json()["msg"]) == ("stopped", msg)


def test_a_runner_exception_is_recorded_and_not_retried(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    calls: list[str] = []

    def crash(job_id: str, params: dict[str, Any]) -> JobResult:
        calls.append(job_id)
        raise RuntimeError("engine exploded\ntraceback...")

    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=crash, log=log.append)
    assert out == [("backup-a", Outcome.FAILED)]
    assert state_json()["msg"] == "engine exploded"
    scheduler.run_due(at("2024-01-06 02:01:00"), runner=crash, log=log.append)
    assert calls == ["backup-a"]


def test_an_unstartable_job_fails_once(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(all="1"))  # vmid together with all: kept in jobs.cfg, cannot run
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.FAILED)] and runner.calls == []
    st = state_json()
    assert st["state"] == "stopped" and "option conflicts with option 'vmid'" in st["msg"]
    assert st["updated"] == ts("2024-01-06 02:00:00")
    out = scheduler.run_due(at("2024-01-06 02:01:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)]
    assert any(line.startswith("jobs.cfg: ") for line in log)


# --- a previous run still going, or dead --------------------------------------------------------


def started_by(pid: int, when: str, job_id: str = "backup-a") -> None:
    start = ts(when)
    upid = make_upid(pid, job_id, start)
    state.mark_started(job_id, upid=upid, pid=pid, now=start)


def test_a_live_previous_run_blocks_the_job(
    ctroot: Path, log: list[str], sleeper: subprocess.Popen[bytes]
) -> None:
    write_jobs(job())
    scheduler.run_due(at("2024-01-04 12:00:00"), runner=Recorder(), log=log.append)
    started_by(sleeper.pid, "2024-01-05 02:00:00")
    before = state.state_path("backup-a").read_text()
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.RUNNING)] and runner.calls == []
    assert state.state_path("backup-a").read_text() == before
    with pytest.raises(StateError, match="job 'backup-a' is still running"):
        scheduler.run_job_now("backup-a", runner, now=at("2024-01-06 02:00:01"), log=log.append)
    # the process ends: at the next pass the run is closed and the job runs
    sleeper.kill()
    sleeper.wait()
    out = scheduler.run_due(at("2024-01-06 02:01:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1
    assert f"job 'backup-a': previous run (pid {sleeper.pid}) job died unexpectedly" in log


def test_a_dead_previous_run_is_closed_as_died(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    scheduler.run_due(at("2024-01-04 12:00:00"), runner=Recorder(), log=log.append)
    pid = dead_pid()
    started_by(pid, "2024-01-05 02:00:00")
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-05 09:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)] and runner.calls == []
    st = state_json()
    assert st.pop("upid")
    assert st == {
        "state": "stopped",
        "time": ts("2024-01-05 02:00:00"),
        "pid": pid,
        "started": ts("2024-01-05 02:00:00"),
        "finished": ts("2024-01-05 09:00:00"),
        "msg": "job died unexpectedly",
    }


def test_a_reused_pid_is_not_the_old_run(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-04 12:00:00"))
    upid = f"UPID:{paths.node_name()}:{os.getpid():08X}:00000001:00000000:vzdump:backup-a:root@pam:"
    state.mark_started("backup-a", upid=upid, pid=os.getpid(), now=ts("2024-01-05 02:00:00"))
    assert not scheduler.run_alive(state.read_state("backup-a"))
    out = scheduler.run_due(at("2024-01-06 02:00:00"), runner=Recorder(), log=log.append)
    assert out == [("backup-a", Outcome.OK)]


# --- missed runs --------------------------------------------------------------------------------


def test_missed_runs_are_skipped_without_repeat_missed(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-04 12:00:00"))
    runner = Recorder()
    # the host was off from before 2024-01-05 02:00 until 09:00 on the 6th (two events missed)
    out = scheduler.run_due(at("2024-01-06 09:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.MISSED)] and runner.calls == []
    assert log == [
        "job 'backup-a': skipping missed run(s) since 2024-01-05 02:00:00 (repeat-missed is off)"
    ]
    assert state_json() == {
        "state": "created",
        "time": ts("2024-01-04 12:00:00"),
        "updated": ts("2024-01-06 09:00:00"),
    }
    out = scheduler.run_due(at("2024-01-07 02:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1


def test_missed_runs_run_once_with_repeat_missed(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(repeat_missed="1"))
    state.create_state("backup-a", now=ts("2024-01-04 12:00:00"))
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 09:00:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1
    assert (
        log[0]
        == "job 'backup-a': missed run at 2024-01-05 02:00:00 - running it now (repeat-missed)"
    )
    assert state_json()["started"] == ts("2024-01-06 09:00:00")
    out = scheduler.run_due(at("2024-01-06 09:01:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE)] and len(runner.calls) == 1


def test_an_event_within_the_grace_is_on_time(ctroot: Path, log: list[str]) -> None:
    grace = scheduler.MISSED_GRACE
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    late = at("2024-01-06 02:00:00") + dt.timedelta(seconds=grace)
    out = scheduler.run_due(late, runner=Recorder(), log=log.append)
    assert out == [("backup-a", Outcome.OK)] and log[0].startswith("job 'backup-a': starting")
    # one second more and (with no scheduler seen in between) it counts as missed
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    out = scheduler.run_due(late + dt.timedelta(seconds=1), runner=Recorder(), first_pass=True)
    assert out == [("backup-a", Outcome.MISSED)]


def test_skipping_missed_runs_still_runs_an_on_time_event(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(schedule="*:0/10"))
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 09:00:30"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1
    assert "skipping missed run(s) since 2024-01-05 12:10:00" in log[0]
    assert state_json()["started"] == ts("2024-01-06 09:00:30")


def test_an_event_seen_by_a_busy_scheduler_is_late_not_missed(
    ctroot: Path, log: list[str], sleeper: subprocess.Popen[bytes]
) -> None:
    write_jobs(job())
    scheduler.run_due(at("2024-01-04 12:00:00"), runner=Recorder(), log=log.append)
    started_by(sleeper.pid, "2024-01-05 02:00:00")
    # passes kept running while the previous run went on past the next event
    out = scheduler.run_due(at("2024-01-06 02:30:00"), runner=Recorder(), log=log.append)
    assert out == [("backup-a", Outcome.RUNNING)]
    book = json.loads(scheduler.book_path().read_text())
    assert book["last-seen"] == ts("2024-01-06 02:30:00")
    sleeper.kill()
    sleeper.wait()
    # an hour later (no pass in between), the 02:00 event is late, not missed: it runs
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 03:30:00"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1
    # on a first pass (no scheduler was seen) the same event counts as missed
    started_by(dead_pid(), "2024-01-05 02:00:00")
    out = scheduler.run_due(at("2024-01-06 03:30:00"), runner=runner, first_pass=True)
    assert out == [("backup-a", Outcome.MISSED)]


# --- concurrency and run-now ----------------------------------------------------------------------


def _pass_in_child(calls: str, barrier: Any, queue: Any) -> None:
    def slow(job_id: str, params: dict[str, Any]) -> JobResult:
        with open(calls, "a") as fh:
            fh.write(job_id + "\n")
        threading.Event().wait(1.0)
        return JobResult(job_id, "vzdump 100", 0, 1, [])

    barrier.wait()
    queue.put(scheduler.run_due(at("2024-01-06 02:00:00"), runner=slow, log=lambda _: None))


def test_concurrent_passes_run_a_due_job_once(ctroot: Path, tmp_path: Path) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    calls = tmp_path / "calls"
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_pass_in_child, args=(str(calls), barrier, queue)) for _ in "ab"]
    try:
        for proc in procs:
            proc.start()
        results = sorted((queue.get(timeout=30) for _ in procs), key=len)
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert calls.read_text() == "backup-a\n"
    assert results[1] == [("backup-a", "ok")]
    assert results[0] in ([], [("backup-a", "not-due")])  # lock busy, or it ran after
    assert [p.exitcode for p in procs] == [0, 0]


def test_run_now_refuses_while_the_scheduler_runs_the_job(ctroot: Path, log: list[str]) -> None:
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    entered, release = threading.Event(), threading.Event()

    def blocking(job_id: str, params: dict[str, Any]) -> JobResult:
        entered.set()
        release.wait(30)
        return JobResult(job_id, "vzdump 100", 0, 1, [])

    outcomes: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(
            scheduler.run_due(at("2024-01-06 02:00:00"), runner=blocking, log=log.append)
        )
    )
    worker.start()
    try:
        assert entered.wait(10)
        assert state_json()["state"] == "started"
        with pytest.raises(StateError, match="still running"):
            scheduler.run_job_now("backup-a", Recorder(), now=at("2024-01-06 02:00:01"))
        # a second pass at the same time does nothing
        assert scheduler.run_due(at("2024-01-06 02:00:02"), runner=Recorder(), log=log.append) == []
        assert "another scheduler pass is still running" in log[-1]
    finally:
        release.set()
        worker.join(30)
    assert outcomes == [[("backup-a", Outcome.OK)]]


def test_run_job_now(ctroot: Path, log: list[str]) -> None:
    write_jobs(job(enabled="0"))
    runner = Recorder()
    result = scheduler.run_job_now(
        "backup-a", runner, now=at("2024-01-06 12:00:00"), log=log.append
    )
    assert result.ok and [c[0] for c in runner.calls] == ["backup-a"]
    assert runner.calls[0][1]["quiet"] is True and runner.calls[0][1]["job-id"] == "backup-a"
    st = state_json()
    assert (st["state"], st["msg"], st["started"]) == ("stopped", "OK", ts("2024-01-06 12:00:00"))
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        scheduler.run_job_now("nope", runner)


def test_run_job_now_propagates_a_crash_after_closing_the_state(ctroot: Path) -> None:
    write_jobs(job())

    def crash(job_id: str, params: dict[str, Any]) -> JobResult:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        scheduler.run_job_now("backup-a", crash, now=at("2024-01-06 12:00:00"), log=print)
    assert (state_json()["state"], state_json()["msg"]) == ("stopped", "boom")


def test_a_fifo_or_a_directory_in_place_of_the_book_is_an_empty_book(ctroot: Path) -> None:
    """A FIFO there held every pass of the timer for good (no later run started)."""
    path = scheduler.book_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    assert returns_within(5, scheduler._read_book) == scheduler.Book()
    path.unlink()
    path.mkdir()
    assert scheduler._read_book() == scheduler.Book()


def test_the_book_forgets_deleted_jobs(ctroot: Path, log: list[str]) -> None:
    write_jobs(job("backup-a"), job("backup-b"))
    scheduler.run_due(at("2024-01-06 01:00:00"), runner=Recorder(), log=log.append)
    assert set(json.loads(scheduler.book_path().read_text())["jobs"]) == {"backup-a", "backup-b"}
    write_jobs(job("backup-a"))
    scheduler.run_due(at("2024-01-06 01:01:00"), runner=Recorder(), log=log.append)
    assert set(json.loads(scheduler.book_path().read_text())["jobs"]) == {"backup-a"}
    scheduler.forget_job("backup-a")
    assert not state.state_path("backup-a").exists()


def test_a_job_removed_by_hand_and_added_again_counts_from_then(
    ctroot: Path, log: list[str]
) -> None:
    """Its old state stayed: re-added weeks later, the job's first event after its old last
    run was late but not missed, and a 'sat 02:00' job ran at once on a Wednesday."""
    write_jobs(job(schedule="sat 02:00"))
    scheduler.run_due(at("2024-01-06 01:00:00"), runner=Recorder(), log=log.append)
    write_jobs()  # removed by hand
    scheduler.run_due(at("2024-01-06 01:01:00"), runner=Recorder(), log=log.append)
    assert not state.state_path("backup-a").exists()
    write_jobs(job(schedule="sat 02:00"))  # back, on a Wednesday afternoon
    runner = Recorder()
    scheduler.run_due(at("2024-01-24 14:00:00"), runner=runner, log=log.append)
    assert runner.calls == []
    scheduler.run_due(at("2024-01-27 02:00:10"), runner=runner, log=log.append)
    assert [c[0] for c in runner.calls] == ["backup-a"]


# --- bad state files, a clock set back ----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"state":"stopped","time":Infinity}',
        '{"state":"stopped","updated":99999999999999999999}',
        '{"state":"stopped","updated":-99999999999999}',
        '{"state":"stopped","time":1e300}',
    ],
)
def test_a_bad_state_file_does_not_stop_the_pass(
    ctroot: Path, log: list[str], content: str
) -> None:
    """One job's state file that no datetime can hold: that job counts from now (logged), the
    next job still runs, and `job list` shows both (it raised OverflowError/ValueError)."""
    from vzdump.jobs import manage

    write_jobs(job("backup-a"), job("backup-b"))
    state.create_state("backup-b", now=ts("2024-01-05 12:00:00"))
    state.state_path("backup-a").write_text(content)
    runner = Recorder()
    now = at("2024-01-06 02:00:30")
    out = scheduler.run_due(now, runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.NOT_DUE), ("backup-b", Outcome.OK)]
    assert [c[0] for c in runner.calls] == ["backup-b"]
    assert "job 'backup-a': state file unreadable - counted as a new job from now" in log
    assert state_json("backup-a") == {"state": "created", "time": ts("2024-01-06 02:00:30")}
    state.state_path("backup-a").write_text(content)
    rows = manage.job_rows(now)
    assert [(r["id"], r["next-run"]) for r in rows] == [
        ("backup-a", ts("2024-01-07 02:00:00")),
        ("backup-b", ts("2024-01-07 02:00:00")),
    ]


def test_a_job_that_cannot_be_handled_is_logged_and_the_pass_goes_on(
    ctroot: Path, log: list[str]
) -> None:
    write_jobs(job("backup-a"), job("backup-b"))
    state.create_state("backup-b", now=ts("2024-01-05 12:00:00"))
    state.state_path("backup-a").mkdir()  # a directory where the state file should be
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 02:00:30"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.ERROR), ("backup-b", Outcome.OK)]
    assert [c[0] for c in runner.calls] == ["backup-b"]
    assert any(line.startswith("job 'backup-a': error - ") for line in log), log


def test_a_pid_without_a_upid_is_not_a_live_run(ctroot: Path, log: list[str]) -> None:
    """`{"state":"started","pid":1}`: PID 1 lives for ever, but nothing says it is the run."""
    write_jobs(job())
    state.state_path("backup-a").parent.mkdir(parents=True)
    state.state_path("backup-a").write_text(
        json.dumps({"state": "started", "pid": 1, "started": ts("2024-01-05 02:00:00")})
    )
    assert not scheduler.run_alive(state.read_state("backup-a"))
    # a UPID naming another PID does not vouch for this one either
    upid = make_upid(os.getpid(), "backup-a", ts("2024-01-05 02:00:00"))
    assert not scheduler.run_alive(state.JobState(state="started", upid=upid, pid=1))
    assert scheduler.run_alive(state.JobState(state="started", upid=upid, pid=os.getpid()))
    runner = Recorder()
    out = scheduler.run_due(at("2024-01-06 02:00:30"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1
    assert "job 'backup-a': previous run (pid 1) job died unexpectedly" in log


def test_a_truncated_state_file_counts_from_now(ctroot: Path, log: list[str]) -> None:
    """It read as created in 1970: the first Monday 03:00 since then was late, and the job ran
    at once, off its schedule."""
    write_jobs(job(schedule="mon 03:00"))
    state.create_state("backup-a", now=ts("2024-01-01 12:00:00"))
    runner = Recorder()
    scheduler.run_due(at("2024-01-03 11:59:00"), runner=runner, log=log.append)  # a heartbeat
    state.state_path("backup-a").write_text('{"state": "stop')
    now = at("2024-01-03 12:00:00")  # a Wednesday
    assert scheduler.run_due(now, runner=runner, log=log.append) == [("backup-a", Outcome.NOT_DUE)]
    assert runner.calls == []
    assert "job 'backup-a': state file unreadable - counted as a new job from now" in log
    assert state_json() == {"state": "created", "time": ts("2024-01-03 12:00:00")}
    out = scheduler.run_due(at("2024-01-08 03:00:10"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)]


def test_a_last_run_in_the_future_counts_from_now(ctroot: Path, log: list[str]) -> None:
    """A run while the clock was 200 days ahead: the job waited until then, silently."""
    write_jobs(job())
    now = at("2024-01-06 01:00:00")
    future = now + dt.timedelta(days=200)
    state.create_state("backup-a", now=ts("2024-01-01 12:00:00"))
    state.mark_started("backup-a", pid=dead_pid(), now=int(future.timestamp()))
    state.mark_stopped("backup-a", "OK", now=int(future.timestamp()))
    runner = Recorder()
    assert scheduler.run_due(now, runner=runner, log=log.append) == [("backup-a", Outcome.NOT_DUE)]
    expected = f"job 'backup-a': last run time {future:%Y-%m-%d %H:%M:%S} is in the future"
    assert any(line.startswith(expected) for line in log), log
    assert state_json()["updated"] == ts("2024-01-06 01:00:00")
    out = scheduler.run_due(at("2024-01-06 02:00:10"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 1


def test_a_clock_set_back_after_a_run_does_not_run_its_event_again(
    ctroot: Path, log: list[str]
) -> None:
    """The night's run at 02:00, then the clock stepped back an hour (an NTP step after a boot
    with a wrong hardware clock): 02:00 comes round again, and the job waits for the next one."""
    write_jobs(job())
    state.create_state("backup-a", now=ts("2024-01-05 12:00:00"))
    runner = Recorder()
    assert scheduler.run_due(at("2024-01-06 02:00:10"), runner=runner, log=log.append) == [
        ("backup-a", Outcome.OK)
    ]
    for again in ("2024-01-06 01:05:00", "2024-01-06 02:00:10", "2024-01-06 02:01:10"):
        assert scheduler.run_due(at(again), runner=runner, log=log.append) == [
            ("backup-a", Outcome.NOT_DUE)
        ], again
    assert len(runner.calls) == 1 and "updated" not in state_json()
    assert not any("future" in line for line in log), log
    out = scheduler.run_due(at("2024-01-07 02:00:10"), runner=runner, log=log.append)
    assert out == [("backup-a", Outcome.OK)] and len(runner.calls) == 2


def test_a_last_run_a_day_ahead_is_left_alone(ctroot: Path, log: list[str]) -> None:
    """Within a day (the clock was set back since): no rewrite."""
    write_jobs(job())
    now = at("2024-01-06 01:00:00")
    state.create_state("backup-a", now=ts("2024-01-06 01:00:00") + state.CLOCK_STEP_BACK)
    before = state.state_path("backup-a").read_text()
    assert scheduler.run_due(now, runner=Recorder(), log=log.append) == [
        ("backup-a", Outcome.NOT_DUE)
    ]
    assert state.state_path("backup-a").read_text() == before
    assert not any("future" in line for line in log)


def test_a_pass_writes_the_book_once_whatever_the_number_of_jobs(
    ctroot: Path, log: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job's visit rewrote the whole book: a pass over 2,000 jobs took 6 s, over 4,000 a
    minute (longer than the timer's interval)."""
    write_jobs(*(job(f"backup-{i:03d}") for i in range(60)))
    writes: list[str] = []
    real = scheduler.atomic.write_text

    def counted(path: Path, text: str) -> None:
        if path == scheduler.book_path():
            writes.append(text)
        real(path, text)

    monkeypatch.setattr(scheduler.atomic, "write_text", counted)
    out = scheduler.run_due(at("2024-01-06 01:00:00"), runner=Recorder(), log=log.append)
    assert len(out) == 60 and all(o == Outcome.NOT_DUE for _, o in out)
    assert len(writes) <= 2, len(writes)  # the pass's start, and its end
    assert len(json.loads(writes[-1])["jobs"]) == 60
