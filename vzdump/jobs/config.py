"""``/etc/pve/jobs.cfg``: scheduled backup jobs (spec vzdump §8).

    vzdump: backup-5f0c2e1a-77d1
        schedule sat 02:00
        all 1
        prune-backups keep-daily=7,keep-last=3

Keys: ``schedule`` (required calendar event, at most 128 characters), ``enabled`` (default 1),
``comment`` (stored URL-escaped like Proxmox's encode_text), ``repeat-missed`` (default 0) and
every vzdump option. The job keys are parsed; every vzdump option is kept as the string written
(property strings and VMID lists round-trip unchanged) and judged against the vzdump schema by
:func:`check_job`, so a bad one keeps its job from running instead of vanishing from it. A file
that is only read and written again is byte-identical.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import atomic, jobsfile, paths
from shared.errors import ConfigError, ParamError
from shared.formats import sectionconfig
from shared.formats.lines import read_config_text
from shared.formats.propstring import Field
from shared.formats.sectionconfig import Section, SectionConfig, SectionType
from shared.formats.types import Bool, ConfigId, FormatError, Str, ValueType

from .. import calendar, options
from . import verify as verify_jobs

JOB_TYPE = "vzdump"
NON_VZDUMP_KEYS = ("schedule", "enabled", "comment", "repeat-missed")
JOB_DEFAULTS = {"enabled": True, "repeat-missed": False}

# Proxmox's encode_text: control characters, ':' and non-ASCII are %-escaped.
COMMENT_SAFE = "".join(chr(c) for c in range(0x20, 0x3A)) + "".join(
    chr(c) for c in range(0x3B, 0x7F)
)


@dataclass(frozen=True)
class EncodedText(ValueType):
    """Free text stored URL-escaped (the job ``comment``)."""

    max_length: int = 512
    name = "string"

    def parse(self, raw: str) -> str:
        text = urllib.parse.unquote(raw, errors="replace")
        if len(text) > self.max_length:
            raise FormatError(f"value may only be {self.max_length} characters long")
        return text

    def render(self, value: Any) -> str:
        return urllib.parse.quote(str(value), safe=COMMENT_SAFE)


@dataclass(frozen=True)
class AsWritten(ValueType):
    """A value parsing never rejects: :func:`check_job` judges it, so a bad one keeps its job
    from running (and the file from being rewritten) instead of vanishing from the job."""

    name = "string"

    def parse(self, raw: str) -> str:
        return raw

    def render(self, value: Any) -> str:
        return str(value)


def _vzdump_field(name: str, spec: options.Option) -> Field:
    """Every vzdump option is kept as written. Dropped with a parse warning (as Proxmox does),
    a mistyped value ran the job with the default instead: a bad ``prune-backups`` fell back
    to the storage's stricter retention and removed backups, a bad ``mailto`` mailed no one,
    a bad ``mode`` or ``storage`` backed up elsewhere or otherwise, and the next ``job add``
    wrote the file without the line. :func:`check_job` judges the value instead."""
    return Field(AsWritten())


JOB_FIELDS: dict[str, Field] = {
    "schedule": Field(Str(max_length=128, check=calendar.check_event), optional=False),
    "enabled": Field(Bool()),
    "comment": Field(EncodedText()),
    "repeat-missed": Field(Bool()),
    **{name: _vzdump_field(name, spec) for name, spec in options.OPTIONS.items()},
}
ARRAYS = frozenset(name for name, spec in options.OPTIONS.items() if spec.array)
JOB_TYPES = {
    JOB_TYPE: SectionType(fields=JOB_FIELDS, id_type=ConfigId, arrays=ARRAYS),
    verify_jobs.JOB_TYPE: verify_jobs.section_type({k: JOB_FIELDS[k] for k in NON_VZDUMP_KEYS}),
}
SCHEDULED_TYPES = (JOB_TYPE, verify_jobs.JOB_TYPE)  # what the scheduler runs
REWRITE_REFUSED = "fix jobs.cfg first: written again now, it would lose what could not be read"


# --- parse / render / files ------------------------------------------------------------------


def parse_jobs(text: str, *, strict: bool = False) -> SectionConfig:
    """Parse jobs.cfg; problems are warnings, or :class:`ConfigError` with ``strict``.

    A section without a schedule (or whose schedule does not parse) or with an invalid ID is
    dropped, as Proxmox skips it. A job with a line or value the parse left out, or whose guest
    selection cannot run (say ``vmid`` with ``all``), is kept with a warning; running it fails
    until it is fixed. A file that lost anything is never written again (:func:`editing_jobs`).
    """
    cfg = sectionconfig.parse(text, JOB_TYPES, strict=strict)
    for section in list(cfg.sections):
        try:
            cfg.validate(section)
        except ConfigError as err:
            if strict:
                raise
            cfg.warnings.append(f"skip section '{section.id}': {err}")
            cfg.lost.append(cfg.warnings[-1])
            cfg.sections.remove(section)
            continue
        if section.problems:  # said already; check_job keeps it from running
            continue
        try:
            check_job(section)
        except ConfigError as err:
            if strict:
                raise
            cfg.warnings.append(str(err))
    return cfg


def render_jobs(cfg: SectionConfig) -> str:
    for section in cfg.sections:
        check_job(section)
    return cfg.render()


def read_jobs(
    path: Path | None = None,
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> SectionConfig:
    """Read jobs.cfg (default ``shared.paths.jobs_cfg()``); a missing file has no jobs.
    ``warn`` is told what the file gets wrong (a value left out: the job runs with the
    default), each line prefixed ``jobs.cfg:``."""
    try:
        path = path or paths.jobs_cfg()
        text = read_config_text(path, path.name)
    except FileNotFoundError:
        return SectionConfig(types=JOB_TYPES)
    jobsfile.keep_private(path)
    cfg = parse_jobs(text, strict=strict)
    if warn is not None:
        for warning in cfg.warnings:
            warn(f"jobs.cfg: {warning}")
    return cfg


def write_jobs(cfg: SectionConfig, path: Path | None = None) -> None:
    """Validate every job, then replace the file atomically (jobs.cfg under its lock)."""
    text = render_jobs(cfg)
    if path is not None:
        atomic.write_text(path, text, mode=jobsfile.MODE)
        return
    with jobsfile.transaction() as jobs:
        jobs.write(text)


@contextlib.contextmanager
def editing_jobs() -> Iterator[SectionConfig]:
    """jobs.cfg for a read-modify-write: :func:`write_jobs` inside the block replaces it under
    the same lock, so an edit by another program (``pct destroy --purge``) is never lost."""
    with jobsfile.transaction() as jobs:
        text = jobs.read()
        cfg = parse_jobs(text) if text else SectionConfig(types=JOB_TYPES)
        if cfg.lost:  # written back, the file would lose what could not be read
            raise ConfigError(f"jobs.cfg: {cfg.lost[0]}", hint=REWRITE_REFUSED)
        yield cfg


# --- jobs ------------------------------------------------------------------------------------


def new_job_id() -> str:
    """A fresh job ID in Proxmox's style: ``backup-`` and the start of a UUID."""
    return f"backup-{str(uuid.uuid4())[:13]}"


def make_job(job_id: str, values: Mapping[str, Any]) -> Section:
    """A validated ``vzdump`` section from raw values (strings, or lists for exclude-path).

    Unknown keys and bad values are reported together in a :class:`ParamError`.
    """
    stype = JOB_TYPES[JOB_TYPE]
    props: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, raw in values.items():
        if raw is None:
            continue
        try:
            props[key] = _parse_job_value(stype, key, raw)
        except FormatError as err:
            errors[key] = str(err) if key in stype.fields else options.UNKNOWN
    try:  # vzdump options are kept as written: judged here, every bad one at once
        options.parse_params(
            {k: v for k, v in props.items() if k not in NON_VZDUMP_KEYS}, options.OPTIONS
        )
    except ParamError as err:
        errors.update(err.errors)
    if errors:
        raise ParamError(errors)
    section = Section(JOB_TYPE, job_id, props)
    check_job(section)
    return section


def is_bool_key(key: str) -> bool:
    """Whether ``--key`` is a flag on the command line (its value may be left out)."""
    if key in NON_VZDUMP_KEYS:
        return isinstance(JOB_FIELDS[key].type, Bool)
    spec = options.OPTIONS.get(key)
    return spec is not None and isinstance(spec.type, Bool)


def _parse_job_value(stype: SectionType, key: str, raw: Any) -> Any:
    if key in stype.arrays:
        items = [raw] if isinstance(raw, str) else list(raw)
        return [stype.parse_value(key, str(item)) for item in items]
    if isinstance(raw, bool):
        raw = "1" if raw else "0"
    return stype.parse_value(key, str(raw))


def check_job(section: Section) -> None:
    """A job must have a valid ID and schedule and select guests like a vzdump call would."""
    if section.problems:  # a value or line the parse left out: never run without it
        raise ConfigError(f"job '{section.id}': jobs.cfg {section.problems[0]}")
    if section.type == verify_jobs.JOB_TYPE:
        verify_jobs.check_job(section, JOB_TYPES)
        return
    if section.type != JOB_TYPE:
        raise ConfigError(f"unknown section type '{section.type}'")
    SectionConfig(types=JOB_TYPES).validate(section)
    for key in section.props:
        if key not in JOB_FIELDS:
            raise ConfigError(f"job '{section.id}': unknown option '{key}'")
    try:  # a value kept as written is judged here: the job cannot run until it is fixed
        options.check_params(job_params(section))
    except ParamError as err:
        detail = "; ".join(f"{k}: {v}" for k, v in err.errors.items())
        raise ConfigError(f"job '{section.id}': {detail}") from None


def is_enabled(section: Section) -> bool:
    return bool(section.props.get("enabled", JOB_DEFAULTS["enabled"]))


def repeat_missed(section: Section) -> bool:
    return bool(section.props.get("repeat-missed", JOB_DEFAULTS["repeat-missed"]))


def schedule(section: Section) -> calendar.CalendarEvent:
    return calendar.parse_event(section.props["schedule"])


def job_params(section: Section) -> dict[str, Any]:
    """The vzdump parameters a run of this job uses: the job's vzdump options (parsed), plus
    ``job-id`` and ``quiet=1`` (§8); the job-only keys are dropped."""
    if section.type == verify_jobs.JOB_TYPE:
        return verify_jobs.job_params(section, NON_VZDUMP_KEYS)
    raw = {k: v for k, v in section.props.items() if k not in NON_VZDUMP_KEYS}
    params = options.parse_params(raw, options.OPTIONS)
    params["job-id"] = section.id
    params["quiet"] = True
    return params


# --- the legacy starttime + dow form ------------------------------------------------------

DOW_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# what Proxmox's job add/set still take and turn into ``schedule``; never written to jobs.cfg
LEGACY_KEYS = ("starttime", "dow")
STARTTIME_RE = re.compile(r"\d{1,2}:\d{1,2}")


def converted_legacy(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with a deprecated ``starttime`` (and ``dow``) turned into ``schedule``, as
    Proxmox's API does for job add/set. :class:`ParamError` names what is wrong."""
    out = dict(values)
    starttime, dow = out.pop("starttime", None), out.pop("dow", None)
    if starttime is None:
        if dow is not None:
            raise ParamError({"starttime": "missing property required by 'dow'"})
        return out
    if out.get("schedule") is not None:
        raise ParamError({"starttime": "'starttime' and 'schedule' cannot both be set"})
    if not isinstance(starttime, str) or not STARTTIME_RE.fullmatch(starttime):
        raise ParamError({"starttime": "value does not match the regex pattern"})
    try:
        schedule = legacy_schedule(starttime, *([] if dow is None else [str(dow)]))
    except ConfigError as err:
        raise ParamError({"dow": str(err)}) from None
    return {"schedule": schedule, **out}


def legacy_schedule(starttime: str, dow: str = "mon,tue,wed,thu,fri,sat,sun") -> str:
    """Convert the old ``starttime`` + ``dow`` pair: ``HH:MM`` alone when every day is
    selected, else ``<dow,list> HH:MM``."""
    days = _parse_dow(dow)
    if len(days) == 7:
        return starttime
    return ",".join(d for d in DOW_ORDER if d in days) + " " + starttime


def _parse_dow(dow: str) -> set[str]:
    numbers = {str(i + 1): d for i, d in enumerate(DOW_ORDER)} | {"0": "sun"}
    days: set[str] = set()
    for word in dow.replace(";", ",").replace(" ", ",").split(","):
        word = numbers.get(word, word.lower())
        if word == "*":
            days.update(DOW_ORDER)
        elif "-" in word and all(p in DOW_ORDER for p in word.split("-", 1)):
            a, b = (DOW_ORDER.index(p) for p in word.split("-", 1))
            days.update(DOW_ORDER[a : b + 1])
        elif word in DOW_ORDER:
            days.add(word)
        elif word:
            raise ConfigError(f"unable to parse day of week '{dow}'")
    return days


__all__ = [
    "JOB_FIELDS",
    "JOB_TYPE",
    "JOB_TYPES",
    "LEGACY_KEYS",
    "NON_VZDUMP_KEYS",
    "check_job",
    "converted_legacy",
    "editing_jobs",
    "is_bool_key",
    "is_enabled",
    "job_params",
    "legacy_schedule",
    "make_job",
    "new_job_id",
    "parse_jobs",
    "read_jobs",
    "render_jobs",
    "repeat_missed",
    "schedule",
    "write_jobs",
]
