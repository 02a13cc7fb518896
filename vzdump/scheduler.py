"""The backup-job scheduler (spec vzdump §8): run the jobs of jobs.cfg that are due.

``vzdump scheduler run-due`` calls :func:`run_due` once a minute (a systemd timer, see
:mod:`shared.systemd`). One pass, holding ``run/ctkit/scheduler.lock`` (a second pass that finds
it busy returns at once, so a job never runs twice), visits every job sorted by ID:

1. skip it if ``node`` is set and is not this node;
2. record config changes (of every job of this node, at the start of the pass, in one write of
   the book): a job seen for the first time gets a ``created`` state, and a changed
   ``schedule`` or ``enabled`` marks the state ``updated`` (the next event counts from then).
   An unreadable state file is rewritten as ``created`` now (logged): read as created in 1970
   it would make the job late and run it at once, off its schedule;
3. skip it if disabled, or if its previous run is still going (its per-job lock is held, or its
   state is ``started`` with a UPID whose PID lives with the process start time the UPID
   names; a PID without one proves nothing). A ``started`` state whose process is gone is
   closed as ``job died unexpectedly``;
4. the next event after the last runtime (last start, or the last config change) is due when
   it is not later than now. A last runtime up to ``CLOCK_STEP_BACK`` (a day) later than now
   (the clock was set back since) still counts: the event it ran for does not run again. One
   further ahead (left by a run while the clock was wrong) is logged and marked ``updated``
   now, or the job would wait silently until then. Due jobs run one at a time, with
   ``quiet 1`` and ``job-id`` set (:func:`vzdump.jobs.config.job_params`), through the
   ``runner`` callable the caller passes.
   The state goes ``starting`` → ``started`` (PID, UPID, start time = the new last runtime) →
   ``stopped`` with ``OK``, the job error, or ``job errors`` when guests failed.

Missed runs. The timer fires every minute, so an event is *missed* when no scheduler pass was
there to start it: it lies more than ``MISSED_GRACE`` (300 s) before the start of this pass and
after the last moment an earlier pass was seen alive (the heartbeat in
``<jobs_state_dir>/ctkit-scheduler.json``, written at the start and end of every pass and after
every job). Without a heartbeat, or with ``first_pass``, every event older than the grace is
missed. An event that fell while an earlier pass was busy with another job is therefore late,
not missed, and still runs. The grace is five minutes rather than one so that a timer delayed
by a loaded host does not drop a backup. For a missed event:

* ``repeat-missed 1``: the job runs once, however many events were missed;
* ``repeat-missed 0``: the missed events are skipped (logged); if an event within the grace
  window is due the job runs for it, otherwise the state is marked ``updated`` now.

A job the pass cannot handle (an exception while visiting it) is logged as ``error`` and the
pass goes on with the next job: one bad file never keeps the others from running.

``now`` is injectable everywhere; with a fixed ``now`` the clock does not advance during a pass.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import atomic, locks, paths, signals
from shared.errors import ConfigError, LockError, NotFoundError, ParamError, StateError
from shared.formats.sectionconfig import Section
from shared.regularfile import UnreadableFile, read_whole

from . import calendar
from .jobs import config, state
from .jobs.state import JobState
from .report import JobResult
from .upid import lives, make_upid, named_process

MISSED_GRACE = 300  # seconds; see the module docstring
STALE_MSG = "job died unexpectedly"
INTERRUPTED_MSG = "interrupted by signal"
BOOK_LOCK_TIMEOUT = 10.0

Runner = Callable[[str, dict[str, Any]], JobResult]
Log = Callable[[str], None]
Clock = Callable[[], dt.datetime]


class Outcome(enum.StrEnum):
    OTHER_NODE = "other-node"
    DISABLED = "disabled"
    RUNNING = "running"  # the previous run is still going
    NOT_DUE = "not-due"
    MISSED = "missed"  # missed events skipped (repeat-missed 0), nothing run
    OK = "ok"  # ran, result OK
    FAILED = "failed"  # ran (or failed to start), result not OK
    ERROR = "error"  # the scheduler could not handle the job (logged); the pass went on


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- locations --------------------------------------------------------------------------------


def scheduler_lock_path() -> Path:
    return paths.run_dir() / "scheduler.lock"


def job_lock_path(job_id: str) -> Path:
    state.state_path(job_id)  # validates the ID
    return paths.run_dir() / f"job-{job_id}.lock"


def book_path() -> Path:
    return paths.jobs_state_dir() / "ctkit-scheduler.json"


def _book_lock_path() -> Path:
    return paths.run_dir() / "scheduler-book.lock"


# --- process liveness --------------------------------------------------------------------------


def run_alive(st: JobState) -> bool:
    """Is the run recorded in ``st`` still going? Only a UPID that names the PID and its
    process start time is trusted: a bare PID (``{"pid": 1}``) may be any process by now, and
    one that never dies would block the job for ever."""
    named = named_process(st.upid or "")
    if named is None or (st.pid is not None and st.pid != named[0]):
        return False
    return lives(*named)


# --- the scheduler's own book: heartbeat and config fingerprints ------------------------------


@dataclass
class Book:
    last_seen: int | None = None  # the last moment a pass was alive
    jobs: dict[str, str] = field(default_factory=dict)  # job ID -> schedule/enabled fingerprint


def _read_book() -> Book:
    try:
        data = json.loads(read_whole(book_path(), state.MAX_STATE).decode("utf-8"))
        seen = data.get("last-seen")
        jobs = data.get("jobs") or {}
        return Book(
            seen if isinstance(seen, int) else None,
            {str(k): str(v) for k, v in jobs.items()} if isinstance(jobs, dict) else {},
        )
    except (OSError, UnreadableFile, ValueError, AttributeError):  # a FIFO: never waited on
        return Book()


@contextlib.contextmanager
def _book() -> Iterator[Book]:
    """Read-modify-write the book under its own short lock (the pass lock is held for hours)."""
    with locks.flock(_book_lock_path(), BOOK_LOCK_TIMEOUT):
        book = _read_book()
        before = _render_book(book)
        yield book
        after = _render_book(book)
        if after != before:  # most visits change nothing: spare the disk an fsync
            atomic.write_text(book_path(), after)


def _render_book(book: Book) -> str:
    data = {"last-seen": book.last_seen, "jobs": dict(sorted(book.jobs.items()))}
    return json.dumps(data, indent=1) + "\n"


def _fingerprint(section: Section) -> str:
    return f"{section.props.get('schedule', '')}\nenabled={int(config.is_enabled(section))}"


def record_job_change(
    section: Section, now: dt.datetime | None = None, log: Log | None = None
) -> None:
    """Note a new job, or a changed schedule/enabled: the next event counts from ``now``.

    The job commands call this right after writing jobs.cfg so the change counts from the
    edit; a scheduler pass books all its jobs at once and notes each as it visits it.
    """
    when = _ts(now if now is not None else _real_now())
    with _book() as book:
        known = _book_jobs(book, [section])
    _note_state(section, known[section.id], when, log)


def _book_jobs(book: Book, sections: list[Section]) -> dict[str, str | None]:
    """Book the jobs' fingerprints; what was booked before. All jobs of a pass are booked in
    one write: one per job rewrote the whole book each time, and a pass over 2,000 jobs took
    6 s (4,000: a minute, longer than the timer's interval)."""
    known = {s.id: book.jobs.get(s.id) for s in sections}
    for section in sections:
        book.jobs[section.id] = _fingerprint(section)
    return known


def _note_state(section: Section, known: str | None, when: int, log: Log | None) -> None:
    if not state.state_path(section.id).exists():
        state.create_state(section.id, now=when)
    elif state.load_state(section.id) is None:
        # read as created at 0, the first event after 1970 would be late and run at once
        state.create_state(section.id, now=when)
        if log is not None:
            log(f"job '{section.id}': state file unreadable - counted as a new job from now")
    elif known is not None and known != _fingerprint(section):
        state.mark_updated(section.id, now=when)
        if log is not None:
            log(f"job '{section.id}': schedule or enabled changed - next run counted from now")


def forget_job(job_id: str) -> None:
    """A deleted job: drop its state file and fingerprint."""
    state.remove_state(job_id)
    with _book() as book:
        book.jobs.pop(job_id, None)


def _heartbeat(when: dt.datetime, keep: set[str] | None = None) -> None:
    """The pass is alive at ``when``; with ``keep`` (the jobs configured), a job no longer
    there is forgotten as a deleted one is: its state file goes too. Kept, the state of a job
    removed by hand and added again weeks later made an event long past late but not missed,
    and the job ran at once, off its schedule."""
    gone: list[str] = []
    with _book() as book:
        book.last_seen = _ts(when)
        if keep is not None:
            gone = [k for k in book.jobs if k not in keep]
            book.jobs = {k: v for k, v in book.jobs.items() if k in keep}
    for job_id in gone:
        state.remove_state(job_id)


# --- clock helpers ----------------------------------------------------------------------------


def _real_now() -> dt.datetime:
    return dt.datetime.now(calendar.local_zone())


def _clock(now: dt.datetime | None) -> Clock:
    if now is None:
        return _real_now
    fixed = now if now.tzinfo is not None else now.replace(tzinfo=calendar.local_zone())
    return lambda: fixed


def _ts(when: dt.datetime) -> int:
    return int(when.timestamp())


def _fmt(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


# --- one pass ---------------------------------------------------------------------------------


@dataclass
class _Pass:
    clock: Clock
    start: dt.datetime
    last_seen: int | None  # heartbeat before this pass; None = treat every old event as missed
    runner: Runner
    log: Log
    booked: dict[str, str | None]  # each job's fingerprint before this pass

    @property
    def zone(self) -> dt.tzinfo:
        return self.start.tzinfo or calendar.local_zone()


def run_due(
    now: dt.datetime | None = None,
    *,
    runner: Runner,
    first_pass: bool = False,
    log: Log = _stderr_log,
) -> list[tuple[str, Outcome]]:
    """Run every due job once; returns ``(job_id, outcome)`` for every job, sorted by ID."""
    clock = _clock(now)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locks.flock(scheduler_lock_path(), 0))
        except LockError:
            log("another scheduler pass is still running - skipping this one")
            return []
        return _run_pass(clock, runner, first_pass, log)


def _run_pass(
    clock: Clock, runner: Runner, first_pass: bool, log: Log
) -> list[tuple[str, Outcome]]:
    from shared.runtime.recovery import recover_all  # not for `vzdump job list`

    start = clock()
    # a backup killed since the last pass left its containers frozen/stopped/locked: undo that
    # before any job meets them
    recover_all(log)
    cfg = config.read_jobs(warn=log)
    jobs = sorted((s for s in cfg.sections if s.type in config.SCHEDULED_TYPES), key=lambda s: s.id)
    with _book() as book:
        last_seen = None if first_pass else book.last_seen
        book.last_seen = _ts(start)
        booked = _book_jobs(book, [s for s in jobs if _on_this_node(s)])
    ctx = _Pass(clock, start, last_seen, runner, log, booked)
    outcomes: list[tuple[str, Outcome]] = []
    with signals.interruptible():  # a job reports a signal as its error; the pass stops too
        for section in jobs:
            try:
                outcome = _visit(section, ctx)
            except Exception as err:  # one job's bad state or config never stops the others
                log(f"job '{section.id}': error - {_one_line(err)}")
                outcome = Outcome.ERROR
            outcomes.append((section.id, outcome))
            if outcome in (Outcome.OK, Outcome.FAILED):
                _heartbeat(clock())
            if signals.interrupted():
                log("scheduler: interrupted by signal - no further job is started")
                raise KeyboardInterrupt
    _heartbeat(clock(), keep={s.id for s in jobs})
    return outcomes


def _on_this_node(section: Section) -> bool:
    node = section.props.get("node")
    return not node or node == paths.node_name()


def _visit(section: Section, ctx: _Pass) -> Outcome:
    if not _on_this_node(section):
        return Outcome.OTHER_NODE
    _note_state(section, ctx.booked.get(section.id), _ts(ctx.clock()), ctx.log)
    if not config.is_enabled(section):
        return Outcome.DISABLED
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locks.flock(job_lock_path(section.id), 0))
        except LockError:
            return Outcome.RUNNING
        if _still_running(section.id, ctx.clock, ctx.log):
            return Outcome.RUNNING
        return _consider(section, ctx)


def _still_running(job_id: str, clock: Clock, log: Log) -> bool:
    """True while the recorded run lives; a dead one is closed as ``job died unexpectedly``."""
    st = state.read_state(job_id)
    if st.state not in ("starting", "started"):
        return False
    if st.state == "started" and run_alive(st):
        return True
    who = f" (pid {st.pid})" if st.pid is not None else ""
    log(f"job '{job_id}': previous run{who} {STALE_MSG}")
    state.mark_stopped(job_id, STALE_MSG, now=_ts(clock()))
    return False


def _consider(section: Section, ctx: _Pass) -> Outcome:
    """Decide on a job that is enabled, on this node and idle; run it when due."""
    job_id = section.id
    event = config.schedule(section)
    now = ctx.clock()
    st = state.read_state(job_id)
    if st.from_future(_ts(now)):
        # left by a run while the clock was wrong: waiting for it would stop the job until then
        ahead = dt.datetime.fromtimestamp(st.last_runtime(), ctx.zone)
        ctx.log(f"job '{job_id}': last run time {_fmt(ahead)} is in the future - counted from now")
        st = state.mark_updated(job_id, now=_ts(now))
    last = dt.datetime.fromtimestamp(st.last_runtime(), ctx.zone)
    due = calendar.next_event(event, last, ctx.zone)
    if due is None or due > now:
        return Outcome.NOT_DUE
    cutoff = ctx.start - dt.timedelta(seconds=MISSED_GRACE)
    missed = due < cutoff and (ctx.last_seen is None or _ts(due) > ctx.last_seen)
    if missed and config.repeat_missed(section):
        ctx.log(f"job '{job_id}': missed run at {_fmt(due)} - running it now (repeat-missed)")
    elif missed:
        ctx.log(f"job '{job_id}': skipping missed run(s) since {_fmt(due)} (repeat-missed is off)")
        # an event inside the grace window is on time: run for it, else count from now
        on_time = calendar.next_event(event, cutoff - dt.timedelta(seconds=1), ctx.zone)
        if on_time is None or on_time > now:
            state.mark_updated(job_id, now=_ts(now))
            return Outcome.MISSED
    return _execute(section, ctx.clock, ctx.runner, ctx.log)[0]


# --- running a job ----------------------------------------------------------------------------


def result_message(result: JobResult) -> str:
    """The state's result: ``OK``, the job error's first line, or ``job errors``."""
    if result.error:
        return result.error.strip().splitlines()[0] if result.error.strip() else "job errors"
    return "OK" if result.ok else "job errors"


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _job_params(section: Section) -> dict[str, Any]:
    config.check_job(section)
    return config.job_params(section)


def _execute(
    section: Section, clock: Clock, runner: Runner, log: Log, *, reraise: bool = False
) -> tuple[Outcome, JobResult | None]:
    """Run one job with the state bookkeeping; the caller holds the job's lock."""
    job_id = section.id
    start = _ts(clock())
    state.mark_starting(job_id, now=start)
    try:
        params = _job_params(section)
    except (ConfigError, ParamError) as err:
        msg = _one_line(err) if isinstance(err, ConfigError) else _param_message(err)
        state.mark_stopped(job_id, msg, now=start)
        state.mark_updated(job_id, now=start)  # do not retry an unstartable job every minute
        if reraise:  # the caller's one error line says it (it was said three times)
            raise
        log(f"job '{job_id}': unable to start - {msg}")
        return Outcome.FAILED, None
    pid = os.getpid()
    upid = make_upid(pid, job_id, start)
    state.mark_started(job_id, upid=upid, pid=pid, now=start)
    log(f"job '{job_id}': starting ({upid})")
    try:
        result = runner(job_id, params)
    except Exception as err:
        msg = _one_line(err)
        state.mark_stopped(job_id, msg, now=_ts(clock()))
        log(f"job '{job_id}': failed - {msg}")
        if reraise:
            raise
        return Outcome.FAILED, None
    except BaseException:
        state.mark_stopped(job_id, INTERRUPTED_MSG, now=_ts(clock()))
        raise
    msg = result_message(result)
    state.mark_stopped(job_id, msg, now=_ts(clock()))
    log(f"job '{job_id}': finished - {msg}")
    return (Outcome.OK if result.ok else Outcome.FAILED), result


def _param_message(err: ParamError) -> str:
    return "; ".join(f"{k}: {v}" for k, v in err.errors.items()) or str(err)


def run_job_now(
    job_id: str,
    runner: Runner,
    *,
    now: dt.datetime | None = None,
    log: Log = _stderr_log,
) -> JobResult:
    """``vzdump job run <id>``: run a job at once, with the scheduler's bookkeeping (the run
    becomes the job's last runtime), and return its result. Refuses with :class:`StateError`
    while the job is still running; :class:`NotFoundError` for an unknown job. A job that
    cannot start (:class:`ConfigError`/:class:`ParamError`) and exceptions of the runner
    propagate after the state is closed."""
    clock = _clock(now)
    cfg = config.read_jobs(warn=log)  # a value left out runs the job with its default
    section = cfg.get(job_id)
    if section is None or section.type not in config.SCHEDULED_TYPES:
        raise NotFoundError(f"job '{job_id}' does not exist")
    record_job_change(section, clock(), log)
    busy = StateError(f"job '{job_id}' is still running")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locks.flock(job_lock_path(job_id), 0))
        except LockError:
            raise busy from None
        if _still_running(job_id, clock, log):
            raise busy
        _, result = _execute(section, clock, runner, log, reraise=True)
        assert result is not None  # with reraise, every failure raised
        return result


__all__ = [
    "MISSED_GRACE",
    "STALE_MSG",
    "Book",
    "Outcome",
    "Runner",
    "book_path",
    "forget_job",
    "job_lock_path",
    "record_job_change",
    "result_message",
    "run_alive",
    "run_due",
    "run_job_now",
    "scheduler_lock_path",
]
