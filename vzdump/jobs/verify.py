"""Verification jobs in jobs.cfg: which backups to check, how, and whom to tell.

    verify: verify-nightly
        schedule sun 04:00
        storage local
        select newest
        outdated-after 7
        mode verify
        mailto root

``select``: ``all`` backups, or the ``newest`` per guest; ``vmid``: only these guests;
``outdated-after N``: skip a backup whose last check of this ``mode`` passed less than N days
ago. ``mode``: ``verify`` (read the archive end to end) or ``restore-test`` (restore it into a
throwaway container on ``target-storage``, start it, run ``check`` inside, destroy it; ids from
``vmid-range``). Notifications go out like a backup job's: ``mailto`` (only on failure unless
``mailnotification always``), the JSON summary beside the job state, ``notify-webhook``.
The same scheduler runs these jobs (``vzdump scheduler run-due``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import ConfigError
from shared.formats.propstring import Field
from shared.formats.sectionconfig import Section, SectionConfig, SectionType
from shared.formats.types import ConfigId, Enum, Int, StorageId, Str

from .. import options

JOB_TYPE = "verify"
TYPE_PARAM = "job-type"  # marks the parameters of a verification run for the runner
RANGE_RE = r"[1-9][0-9]{2,8}-[1-9][0-9]{2,8}"

_OWN_FIELDS: dict[str, Field] = {
    "storage": Field(StorageId, optional=False),
    "vmid": Field(options.OPTIONS["vmid"].type),
    "select": Field(Enum("all", "newest")),
    "outdated-after": Field(Int(minimum=0)),
    "mode": Field(Enum("verify", "restore-test")),
    "target-storage": Field(StorageId),
    "vmid-range": Field(Str(pattern=RANGE_RE)),
    "check": Field(Str(max_length=1024)),
    "mailto": Field(options.OPTIONS["mailto"].type),
    "mailnotification": Field(Enum("always", "failure")),
    "notify-webhook": Field(options.OPTIONS["notify-webhook"].type),
}
DEFAULTS: dict[str, Any] = {"select": "all", "mode": "verify", "mailnotification": "failure"}


def section_type(common: Mapping[str, Field]) -> SectionType:
    """The ``verify`` section: the job keys every job has (schedule, enabled, ...) plus ours."""
    return SectionType(fields={**common, **_OWN_FIELDS}, id_type=ConfigId)


def check_job(section: Section, types: Mapping[str, SectionType]) -> None:
    SectionConfig(types=dict(types)).validate(section)
    fields = types[JOB_TYPE].fields
    for key in section.props:
        if key not in fields:
            raise ConfigError(f"job '{section.id}': unknown option '{key}'")
    if "storage" not in section.props:
        raise ConfigError(f"job '{section.id}': storage: property is missing")


def job_params(section: Section, common: tuple[str, ...]) -> dict[str, Any]:
    """A verification run's parameters: our keys (defaults filled in), ``job-id``, the type."""
    params = dict(DEFAULTS)
    params.update({k: v for k, v in section.props.items() if k not in common})
    params["job-id"] = section.id
    params[TYPE_PARAM] = JOB_TYPE
    return params


def is_verify(params: Mapping[str, Any]) -> bool:
    return params.get(TYPE_PARAM) == JOB_TYPE


__all__ = ["JOB_TYPE", "check_job", "is_verify", "job_params", "section_type"]
