"""What ``vzdump job add/set/remove/list`` do: validated edits of jobs.cfg (each one a
transaction under the jobs.cfg lock, recorded with the scheduler) and the job listing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.errors import AlreadyExistsError, ConfigError, NotFoundError, ParamError
from shared.formats.sectionconfig import Section
from shared.formats.types import ConfigId, FormatError

from .. import options, scheduler
from ..calendar import next_event
from . import config
from .state import read_state


def add_job(job_id: str, values: Mapping[str, Any], now: dt.datetime | None = None) -> Section:
    """Add a job from raw ``--key value`` strings; refuses an existing id."""
    with config.editing_jobs() as cfg:
        if cfg.get(job_id) is not None:
            raise AlreadyExistsError(f"job '{job_id}' already exists")
        section = validated_job(job_id, config.converted_legacy(values))
        cfg.add(section)
        config.write_jobs(cfg)
        scheduler.record_job_change(section, now)
    return section


def set_job(
    job_id: str,
    values: Mapping[str, Any],
    delete: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> Section:
    """Change a job: drop the ``delete`` keys, then set ``values`` (raw strings)."""
    with config.editing_jobs() as cfg:
        old = cfg.get(job_id)
        if old is None:
            raise NotFoundError(f"job '{job_id}' does not exist")
        merged: dict[str, Any] = {k: _raw(v) for k, v in old.props.items()}
        for key in delete:
            merged.pop(key, None)
        merged.update(config.converted_legacy(values))
        section = validated_job(job_id, merged)
        cfg.sections[cfg.sections.index(old)] = section
        config.write_jobs(cfg)
        scheduler.record_job_change(section, now)
    return section


def remove_job(job_id: str) -> None:
    with config.editing_jobs() as cfg:
        if cfg.get(job_id) is None:
            raise NotFoundError(f"job '{job_id}' does not exist")
        cfg.remove(job_id)
        config.write_jobs(cfg)
        scheduler.forget_job(job_id)


def validated_job(job_id: str, values: Mapping[str, Any]) -> Section:
    """A validated job; what the user got wrong is reported as ``400`` parameter errors."""
    errors: dict[str, str] = {}
    try:
        ConfigId.parse(job_id)
    except FormatError as err:
        errors["id"] = str(err)
    if values.get("schedule") is None:
        errors["schedule"] = "property is missing and it is not optional"
    if errors:
        raise ParamError(errors)
    try:
        return config.make_job(job_id, values)
    except ConfigError as err:
        raise _selection_error(values) or ParamError(message=str(err)) from None


def _selection_error(values: Mapping[str, Any]) -> ParamError | None:
    """The guest-selection problem behind make_job's ConfigError, named per option as the
    ``vzdump`` command names it (``vmid: property is missing``)."""
    raw = {k: v for k, v in values.items() if k not in config.NON_VZDUMP_KEYS}
    try:
        options.check_params(options.parse_params(raw, options.OPTIONS))
    except ParamError as err:
        return err
    return None


def _raw(value: Any) -> Any:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return [str(v) for v in value]
    return value if isinstance(value, str) else str(value)


def job_rows(
    now: dt.datetime, warn: Callable[[str], None] = lambda _w: None
) -> list[dict[str, Any]]:
    """``job list``: every job by id with its last run, result and next run (epoch seconds);
    what is wrong in jobs.cfg (a value left out: the job runs with the default) to ``warn``."""
    cfg = config.read_jobs(warn=warn)
    return [_row(s, now) for s in sorted(cfg.sections, key=lambda s: s.id)]


def _row(section: Section, now: dt.datetime) -> dict[str, Any]:
    st = read_state(section.id)
    nxt = None
    if config.is_enabled(section):
        stamp = int(now.timestamp())
        # none yet, or far ahead of now (the clock was wrong): from now, as the scheduler counts
        last = st.last_runtime() if st.last_runtime() and not st.from_future(stamp) else stamp
        after = dt.datetime.fromtimestamp(last, now.tzinfo)
        event = next_event(config.schedule(section), after)
        nxt = int(event.timestamp()) if event else None
    return {
        "id": section.id,
        "schedule": section.props.get("schedule"),
        "enabled": int(config.is_enabled(section)),
        "comment": section.props.get("comment"),
        "last-run": st.started,
        "result": st.msg,
        "state": st.state,
        "next-run": nxt,
    }


__all__ = ["add_job", "job_rows", "remove_job", "set_job", "validated_job"]
