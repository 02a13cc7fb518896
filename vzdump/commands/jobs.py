"""``vzdump job ...``, ``vzdump scheduler run-due`` and ``vzdump timer ...``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from shared.cli import EXTRA_ARGS, OutputFormat, OutputFormatOption, new_app, print_json
from shared.errors import AlreadyExistsError, CtkitError, JobError, NotFoundError, ParamError
from shared.systemd import find_program, install_units, remove_units

from .. import scheduler
from ..calendar import next_event
from ..engine.job import Job
from ..jobs import config as jobcfg
from ..jobs.state import read_state
from ..report import JobResult
from .backup import split_args

SCHEDULER_UNITS = ["ctkit-scheduler.service", "ctkit-scheduler.timer"]

job_app = new_app("Scheduled backup jobs (jobs.cfg).")
scheduler_app = new_app("The job scheduler.")
timer_app = new_app("Install the scheduler's systemd timer.")


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")
    app.add_typer(scheduler_app, name="scheduler")
    app.add_typer(timer_app, name="timer")


def runner(job_id: str, params: dict[str, Any]) -> JobResult:
    return Job(params).run()


def _job_values(args: list[str]) -> dict[str, Any]:
    positional, values = split_args(args)
    if positional:
        raise ParamError(message="too many arguments")
    return values


@job_app.command("add", context_settings=EXTRA_ARGS)
def add(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="id")]) -> None:
    """Add a job: vzdump job add <id> --schedule '<event>' [vzdump options]."""
    cfg = jobcfg.read_jobs()
    if cfg.get(job_id) is not None:
        raise AlreadyExistsError(f"job '{job_id}' already exists")
    section = jobcfg.make_job(job_id, _job_values(ctx.args))
    cfg.add(section)
    jobcfg.write_jobs(cfg)
    scheduler.record_job_change(section)


@job_app.command("set", context_settings=EXTRA_ARGS)
def set_(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="id")],
    delete: Annotated[str | None, typer.Option(help="Options to remove.")] = None,
) -> None:
    """Change a job's options (--delete removes options)."""
    cfg = jobcfg.read_jobs()
    old = cfg.get(job_id)
    if old is None:
        raise NotFoundError(f"job '{job_id}' does not exist")
    values: dict[str, Any] = {k: _raw(v) for k, v in old.props.items()}
    for key in [k for k in (delete or "").replace(";", ",").split(",") if k.strip()]:
        values.pop(key.strip(), None)
    values.update(_job_values(ctx.args))
    section = jobcfg.make_job(job_id, values)
    cfg.sections[cfg.sections.index(old)] = section
    jobcfg.write_jobs(cfg)
    scheduler.record_job_change(section)


def _raw(value: Any) -> Any:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return [str(v) for v in value]
    return value if isinstance(value, str) else str(value)


@job_app.command("remove")
def remove(job_id: Annotated[str, typer.Argument(metavar="id")]) -> None:
    """Remove a job."""
    cfg = jobcfg.read_jobs()
    if cfg.get(job_id) is None:
        raise NotFoundError(f"job '{job_id}' does not exist")
    cfg.remove(job_id)
    jobcfg.write_jobs(cfg)
    scheduler.forget_job(job_id)


def _row(section: Any) -> dict[str, Any]:
    st = read_state(section.id)
    nxt = None
    if jobcfg.is_enabled(section):
        after = dt.datetime.fromtimestamp(st.last_runtime() or dt.datetime.now().timestamp())
        event = next_event(jobcfg.schedule(section), after.astimezone())
        nxt = int(event.timestamp()) if event else None
    return {
        "id": section.id,
        "schedule": section.props.get("schedule"),
        "enabled": int(jobcfg.is_enabled(section)),
        "comment": section.props.get("comment"),
        "last-run": st.started,
        "result": st.msg,
        "state": st.state,
        "next-run": nxt,
    }


def _when(epoch: int | None) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S") if epoch else "-"


@job_app.command("list")
def list_(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List jobs with their last run, result and next run."""
    rows = [_row(s) for s in sorted(jobcfg.read_jobs().sections, key=lambda s: s.id)]
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
    result = scheduler.run_job_now(job_id, runner)
    if result.error:
        raise CtkitError(result.error)
    if not result.ok:
        raise JobError("job errors")


@scheduler_app.command("run-due")
def run_due(
    first_pass: Annotated[bool | None, typer.Option("--first-pass")] = None,
) -> None:
    """Run every enabled job whose next event has come (call this every minute)."""
    for job_id, outcome in scheduler.run_due(runner=runner, first_pass=bool(first_pass)):
        print(f"{job_id}: {outcome}")


@timer_app.command("install")
def timer_install() -> None:
    """Write ctkit-scheduler.service/.timer (every minute, persistent) and enable them."""
    for path in install_units(SCHEDULER_UNITS, exec_path=find_program("vzdump")):
        print(f"wrote {path}")


@timer_app.command("remove")
def timer_remove() -> None:
    """Disable and delete the scheduler units."""
    for path in remove_units(SCHEDULER_UNITS):
        print(f"removed {path}")
