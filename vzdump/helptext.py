"""The backup command's help: its usage and every option of the vzdump command line."""

from __future__ import annotations

from .options import CLI_OPTIONS, OPTIONS

DESCRIPTIONS: dict[str, str] = {
    "vmid": "The ID of the guest system you want to backup.",
    "all": "Backup all known guest systems on this host.",
    "exclude": "Exclude specified guest systems (assumes --all).",
    "pool": "Backup all known guest systems included in the specified pool.",
    "node": "Only run if executed on this node.",
    "mode": "Backup mode.",
    "compress": "Compress dump file.",
    "zstd": "Zstd threads. N=0 uses half of the available cores.",
    "pigz": "Use pigz instead of gzip when N>0. N=1 uses half of cores, N>1 uses N as "
    "thread count.",
    "dumpdir": "Store resulting files to specified directory.",
    "storage": "Store resulting file to this storage.",
    "tmpdir": "Store temporary files to specified directory.",
    "bwlimit": "Limit I/O bandwidth (in KiB/s).",
    "ionice": "Set IO priority when using the BFQ scheduler.",
    "parallel": "ctkit: back up up to N guests at once (each with its own log); 1 = one after "
    "another.",
    "lockwait": "Maximal time to wait for the global lock (minutes).",
    "stopwait": "Maximal time to wait until a guest system is stopped (minutes).",
    "prune-backups": "Use these retention options instead of those from the storage configuration.",
    "remove": "Prune older backups according to 'prune-backups'.",
    "script": "Use specified hook script.",
    "exclude-path": "Exclude certain files/directories (shell globs); may be repeated.",
    "stdexcludes": "Exclude temporary files and logs.",
    "quiet": "Be quiet.",
    "mailto": "Comma-separated list of email addresses or users that should receive email "
    "notifications.",
    "mailnotification": "Deprecated: use notification targets/matchers instead.",
    "notification-mode": "Determine which notification system to use.",
    "notify-webhook": "ctkit: POST the job's JSON summary to this URL.",
    "notes-template": "Template string for generating notes for the backup(s).",
    "protected": "If true, mark backup(s) as protected.",
    "verify": "ctkit: read each new archive back end to end before the retention runs.",
    "stop": "Stop running backup jobs on this host.",
    "performance": "Other performance-related settings (accepted, no effect on containers).",
    "fleecing": "Options for backup fleecing (VM only; accepted and ignored).",
    "pbs-change-detection-mode": "PBS mode used to detect file changes (accepted and ignored).",
    "job-id": "The ID of the backup job that started this run (set by the scheduler).",
    "stdout": "Write tar to stdout, not to a file.",
}


JOB_DESCRIPTIONS: dict[str, tuple[str, str]] = {  # a job's own key: (value, text)
    "schedule": ("<calendar-event>", "Backup schedule, e.g. 'mon..fri 02:30' (required)."),
    "enabled": ("<boolean>", "Enable or disable the job."),
    "comment": ("<string>", "Description for the job."),
    "repeat-missed": (
        "<boolean>",
        "Run a job whose last event was missed (the host was down) as soon as possible.",
    ),
}
WIDTH = 98  # the longest line of a description, 100 once click indents the help by two
INDENT = 31  # where a description starts, below its option


def backup_help() -> str:
    """The docstring-like help of ``vzdump {<vmid>} [OPTIONS]``: one entry per option."""
    lines = ["Create backup of containers.", "", "\b", "Options of the backup command:"]
    for name, option in CLI_OPTIONS.items():
        if name != "vmid":
            lines += _entry(name, option.type.describe(), option.default, DESCRIPTIONS.get(name))
    lines += ["", "\b", "Arguments:", f"  {'<vmid>':<28} {DESCRIPTIONS['vmid']}"]
    return "\n".join(lines)


def job_options_help(own: frozenset[str] = frozenset()) -> str:
    """The keys of a backup job (``vzdump job add/set``, jobs.cfg): the job's own, then every
    vzdump option a job stores (not ``--stdout``); ``own`` are the command's declared options."""
    from .jobs.config import JOB_DEFAULTS, NON_VZDUMP_KEYS

    lines = ["\b", "Job options (as -key value or --key value):"]
    for name in NON_VZDUMP_KEYS:
        if name not in own:
            value, text = JOB_DESCRIPTIONS[name]
            lines += _entry(name, value, JOB_DEFAULTS.get(name), text)
    for name, option in OPTIONS.items():
        if name not in own:
            lines += _entry(name, option.type.describe(), option.default, DESCRIPTIONS.get(name))
    return "\n".join(lines)


def _entry(name: str, value: str, default: object, text: str | None) -> list[str]:
    """An option's two or more lines: name, value and default; its description wrapped."""
    shown = f"   (default={_default(default)})" if default is not None else ""
    lines = [f"  --{name:<26} {value}{shown}"]
    line = ""
    for word in (text or "").split():
        if line and INDENT + len(line) + 1 + len(word) > WIDTH:
            lines.append(" " * INDENT + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(" " * INDENT + line)
    return lines


def _default(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
