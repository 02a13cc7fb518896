"""``vzdump job ...``, ``vzdump scheduler run-due`` and ``vzdump timer ...``.

Test hook (hidden, for the end-to-end tests): ``CTKIT_SCHEDULER_NOW=<ISO 8601 time>`` makes
every command here take that instant as "now" - the scheduler's clock in ``run-due`` and ``job
run``, the moment ``job add``/``job set`` record a change, and the base of ``job list``'s next
run. A time without a zone is local time. The backup itself (archive names, logs) still uses the
real clock. Unset, the real clock is used.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import (
    EXTRA_ARGS,
    OutputFormat,
    OutputFormatOption,
    epilog_command,
    new_app,
    parse_schema_args,
    print_json,
    schema_options,
)
from shared.errors import CtkitError, JobError

if TYPE_CHECKING:
    from ..report import JobResult

NOW_ENV = "CTKIT_SCHEDULER_NOW"
SCHEDULER_UNITS = ["ctkit-scheduler.service", "ctkit-scheduler.timer"]

job_app = new_app("Scheduled backup jobs (jobs.cfg).")
scheduler_app = new_app("The job scheduler.")
timer_app = new_app("Install the scheduler's systemd timer.")


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")
    app.add_typer(scheduler_app, name="scheduler")
    app.add_typer(timer_app, name="timer")


def runner(job_id: str, params: dict[str, Any]) -> JobResult:
    from .. import verifyrun
    from ..engine.job import Job
    from ..jobs import verify as verify_jobs

    if verify_jobs.is_verify(params):
        return verifyrun.run(job_id, params)
    return Job(params).run()


def _now() -> dt.datetime | None:
    """The test clock (see the module docstring), or None for the real one."""
    raw = os.environ.get(NOW_ENV)
    if not raw:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise CtkitError(f"{NOW_ENV}: invalid ISO 8601 time '{raw}'") from None
    from ..calendar import local_zone

    return when if when.tzinfo is not None else when.replace(tzinfo=local_zone())


def _is_bool_key(key: str) -> bool:
    from ..jobs import config as jobcfg

    return jobcfg.is_bool_key(key)


def _is_job_key(key: str) -> bool:
    from ..jobs import config as jobcfg

    return key in jobcfg.JOB_FIELDS or key in jobcfg.LEGACY_KEYS


def _job_values(args: list[str]) -> dict[str, Any]:
    """``--key value`` pairs of the job keys: schedule, enabled, comment, repeat-missed and
    every vzdump option jobs.cfg takes (not ``--stdout``); raw strings, validated later."""
    from ..jobs import config as jobcfg

    return parse_schema_args(
        args,
        is_known=_is_job_key,
        is_bool=_is_bool_key,
        is_array=lambda k: k in jobcfg.JOB_TYPES[jobcfg.JOB_TYPE].arrays,
    )


def _job_options(own: frozenset[str]) -> str:
    from ..helptext import job_options_help

    return job_options_help(own)


JobOptionsCommand = epilog_command(_job_options)  # add/set: every key a job takes


@job_app.command("add", cls=JobOptionsCommand, context_settings=EXTRA_ARGS)
@schema_options(_is_bool_key, _is_job_key)
def add(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="id")]) -> None:
    """Add a job: vzdump job add <id> --schedule '<event>' [vzdump options]."""
    from ..jobs import manage

    manage.add_job(job_id, _job_values(ctx.args), _now())


@job_app.command("set", cls=JobOptionsCommand, context_settings=EXTRA_ARGS)
@schema_options(_is_bool_key, _is_job_key)
def set_(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="id")],
    delete: Annotated[
        list[str] | None,
        typer.Option(metavar="<str>", help="Options to remove (a list; may be repeated)."),
    ] = None,
) -> None:
    """Change a job's options (--delete removes options)."""
    from ..jobs import manage

    joined = ",".join(delete or [])  # --delete a --delete b: both, as Proxmox's -list options
    keys = [k.strip() for k in joined.replace(";", ",").split(",") if k.strip()]
    manage.set_job(job_id, _job_values(ctx.args), keys, _now())


@job_app.command("remove")
def remove(job_id: Annotated[str, typer.Argument(metavar="id")]) -> None:
    """Remove a job."""
    from ..jobs import manage

    manage.remove_job(job_id)


def _when(epoch: int | None) -> str:
    if not epoch:
        return "-"
    from ..calendar import local_zone

    return dt.datetime.fromtimestamp(epoch, local_zone()).strftime("%Y-%m-%d %H:%M:%S")


@job_app.command("list")
def list_(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List jobs with their last run, result and next run."""
    from ..calendar import local_zone
    from ..jobs import manage

    now = _now() or dt.datetime.now(local_zone())
    rows = manage.job_rows(now, warn=lambda w: print(w, file=sys.stderr))
    if output_format is not OutputFormat.text:
        print_json(rows, output_format)
        return
    head = ("ID", "Enabled", "Schedule", "Last run", "Result", "Next run")
    table = [head] + [
        (r["id"], "yes" if r["enabled"] else "no", str(r["schedule"]), _when(r["last-run"]),
         r["result"] or "-", _when(r["next-run"]))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@job_app.command("run")
def run_now(job_id: Annotated[str, typer.Argument(metavar="id")]) -> None:
    """Run a job now, as the scheduler would (its state records the run)."""
    from .. import scheduler

    result = scheduler.run_job_now(job_id, runner, now=_now())
    if result.error:
        raise CtkitError(result.error)
    if not result.ok:
        raise JobError("job errors")


@scheduler_app.command("run-due")
def run_due(
    first_pass: Annotated[
        bool | None,
        typer.Option(
            "--first-pass",
            help="Ignore the last pass seen alive: every event older than the grace is missed.",
        ),
    ] = None,
) -> None:
    """Run every enabled job whose next event has come (call this every minute). Exits 13
    when a job failed, so that the timer's unit shows it."""
    from .. import scheduler

    outcomes = scheduler.run_due(_now(), runner=runner, first_pass=bool(first_pass))
    for job_id, outcome in outcomes:
        print(f"{job_id}: {outcome}")
    bad = (scheduler.Outcome.FAILED, scheduler.Outcome.ERROR)
    failed = [job_id for job_id, outcome in outcomes if outcome in bad]
    if failed:
        raise JobError(f"job(s) failed: {', '.join(failed)}")


@timer_app.command("install")
def timer_install() -> None:
    """Write ctkit-scheduler.service/.timer (every minute, persistent) and enable them."""
    from shared.systemd import find_program, install_units

    for path in install_units(SCHEDULER_UNITS, exec_path=find_program("vzdump")):
        print(f"wrote {path}")


@timer_app.command("remove")
def timer_remove() -> None:
    """Disable and delete the scheduler units."""
    from shared.systemd import remove_units

    for path in remove_units(SCHEDULER_UNITS):
        print(f"removed {path}")
