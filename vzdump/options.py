"""vzdump's options (spec vzdump §1): the option table as a schema, parameter checks, VMID lists,
merging with vzdump.conf and the storage's retention, and the job header's command line.

Values are typed once parsed: booleans are ``bool``, VMID lists sorted ``list[int]``,
``exclude-path`` and ``mailto`` lists of strings, property strings (``prune-backups``,
``performance``, ``fleecing``) dicts. ``prune-backups`` is normalised (§5.1) when parsed.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shared import prune
from shared.archive.codecs import Compression
from shared.errors import ParamError
from shared.formats import vzdumpconf
from shared.formats.archivename import compress_codec
from shared.formats.propstring import Field, PropertyStringError, PropSchema
from shared.formats.types import (
    Bool,
    Enum,
    FormatError,
    Int,
    ListOf,
    StorageId,
    Str,
    ValueType,
    parse_vmid,
)

from . import notes

MAX_THREADS = 256

UNKNOWN = vzdumpconf.UNKNOWN_KEY
STD_EXCLUDES = ("/tmp/?*", "/var/tmp/?*", "/var/run/?*.pid")
DEFAULT_STORAGE = "local"


# --- value types --------------------------------------------------------------------------


def parse_vmid_list(raw: str | Sequence[str]) -> list[int]:
    """A VMID list (§1.2): words split on ``,;`` and white space, duplicates dropped, sorted.

    Each word is a VMID as Proxmox's ``pve-vmid`` format has it - 3 to 9 digits without a
    leading zero - so ``0100`` is not VMID 100. A non-numeric word raises ``strange VM ID
    '<x>'``, any other misfit Proxmox's ``value does not look like a valid VM ID``.
    """
    text = raw if isinstance(raw, str) else " ".join(raw)
    result: set[int] = set()
    for word in re.split(r"[,;\s]+", text.strip()):
        if word == "":
            continue
        if not re.fullmatch(r"[0-9]+", word):
            raise FormatError(f"strange VM ID '{word}'")
        result.add(parse_vmid(word))
    return sorted(result)


@dataclass(frozen=True)
class VmidList(ValueType):
    name = "vmid-list"
    joins_repeats = True

    def parse(self, raw: str) -> list[int]:
        return parse_vmid_list(raw)

    def render(self, value: Any) -> str:
        return value if isinstance(value, str) else ",".join(str(v) for v in value)


@dataclass(frozen=True)
class PropString(ValueType):
    """A property-string option, parsed to a dict (optionally normalised)."""

    schema: PropSchema
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    name = "property-string"

    def parse(self, raw: str) -> dict[str, Any]:
        value = self.schema.parse(raw)
        return self.normalize(value) if self.normalize else value

    def render(self, value: Any) -> str:
        return value if isinstance(value, str) else self.schema.render(value)


# Proxmox's email-or-username format: an address, or a local user name (``root``); ``user@realm``
# is an address by the same rule.
EMAIL_USER_RE = r"[\w+\-~]+(\.[\w+\-~]+)*"
EMAIL_RE = EMAIL_USER_RE + r"@[a-zA-Z0-9\-]+(\.[a-zA-Z0-9\-]+)*"


def check_email_or_username(value: str) -> None:
    # ASCII, as Proxmox's regex over bytes: a non-ASCII name became an encoded word in the To:
    # line, and the mail went to an address nobody has
    if not (
        re.fullmatch(EMAIL_RE, value, re.ASCII) or re.fullmatch(EMAIL_USER_RE, value, re.ASCII)
    ):
        raise FormatError(
            f"invalid format - value '{value}' does not look like a valid email address "
            "or user name"
        )


def check_node(value: str) -> None:
    if not re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", value):
        raise FormatError("invalid format - value does not look like a valid node name")


def check_webhook_url(value: str) -> None:
    """``notify-webhook`` (a ctkit addition): an http(s) URL the job summary is POSTed to."""
    try:
        parts = urllib.parse.urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:  # e.g. an unbalanced IPv6 bracket, port 99999
        valid = False
    if not valid or re.search(r"[\s\x00-\x1f\x7f]", value):
        raise FormatError("invalid format - value does not look like an http(s) URL")


PERFORMANCE = PropSchema(
    {
        "max-workers": Field(Int(minimum=1, maximum=256)),
        "pbs-entries-max": Field(Int(minimum=1)),
    }
)
PERFORMANCE_DEFAULTS = {"max-workers": 16, "pbs-entries-max": 1048576}
FLEECING = PropSchema({"enabled": Field(Bool(), default_key=True), "storage": Field(StorageId)})


# --- the option table (§1.1) ----------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    type: ValueType
    default: Any = None
    array: bool = False


OPTIONS: dict[str, Option] = {
    "vmid": Option(VmidList()),
    "all": Option(Bool(), False),
    "exclude": Option(VmidList()),
    "pool": Option(Str()),
    "node": Option(Str(check=check_node)),
    "mode": Option(Enum("snapshot", "suspend", "stop"), "snapshot"),
    "compress": Option(Enum("0", "1", "gzip", "lzo", "zstd"), "0"),
    # threads: bounded before anything runs (2^64 went through a whole stop-mode backup and
    # failed at the compressor); zstd itself caps what it uses far below the bound
    "zstd": Option(Int(minimum=0, maximum=MAX_THREADS), 1),
    "pigz": Option(Int(minimum=0, maximum=MAX_THREADS), 0),
    "dumpdir": Option(Str()),
    "storage": Option(StorageId),
    "tmpdir": Option(Str()),
    "bwlimit": Option(Int(minimum=0), 0),
    "ionice": Option(Int(minimum=0, maximum=8), 7),
    # ctkit addition: how many guests are backed up at once (vzdump.engine.parallel)
    "parallel": Option(Int(minimum=1, maximum=64), 1),
    "lockwait": Option(Int(minimum=0), 180),
    "stopwait": Option(Int(minimum=0), 10),
    "prune-backups": Option(PropString(prune.PRUNE_SCHEMA, prune.normalize)),
    "remove": Option(Bool(), True),
    "script": Option(Str()),
    "exclude-path": Option(Str(), array=True),
    "stdexcludes": Option(Bool(), True),
    "quiet": Option(Bool(), False),
    "mailto": Option(ListOf(Str(check=check_email_or_username))),
    "mailnotification": Option(Enum("always", "failure"), "always"),
    "notification-mode": Option(Enum("auto", "legacy-sendmail", "notification-system"), "auto"),
    # ctkit addition: POST the notification's JSON summary here (see vzdump.notify)
    "notify-webhook": Option(Str(max_length=1024, check=check_webhook_url)),
    "notes-template": Option(Str(max_length=notes.MAX_LENGTH, check=notes.check_template)),
    "protected": Option(Bool()),
    # ctkit addition: read the new archive back end to end (shared.backups.verify)
    "verify": Option(Bool()),
    "stop": Option(Bool(), False),
    # accepted and ignored: they only matter for VMs or Proxmox Backup Server
    "performance": Option(PropString(PERFORMANCE)),
    "fleecing": Option(PropString(FLEECING)),
    "pbs-change-detection-mode": Option(Enum("legacy", "data", "metadata")),
    "job-id": Option(Str(pattern=r"\S+", max_length=50)),
}

# The command line also takes --stdout; vzdump.conf and jobs.cfg do not.
CLI_OPTIONS: dict[str, Option] = {**OPTIONS, "stdout": Option(Bool())}

SELECTION = ("vmid", "all", "exclude", "pool")
# Evaluated before vzdump.conf is read, so setting them there has no effect (§1.3).
CONF_IGNORED = (*SELECTION, "node", "stop", "quiet", "job-id")


def parse_option(name: str, raw: Any, table: Mapping[str, Option] = CLI_OPTIONS) -> Any:
    """Parse one option's raw value (a string; a list of strings for ``exclude-path``)."""
    spec = table.get(name)
    if spec is None:
        raise FormatError(UNKNOWN)
    if spec.array:
        items = [raw] if isinstance(raw, str) else list(raw)
        return [spec.type.parse(str(item)) for item in items]
    if isinstance(raw, list | tuple):
        raw = " ".join(str(r) for r in raw)
    return spec.type.parse(_text(raw))


def _text(raw: Any) -> str:
    return ("1" if raw else "0") if isinstance(raw, bool) else str(raw)


def parse_params(
    raw: Mapping[str, Any], table: Mapping[str, Option] = CLI_OPTIONS
) -> dict[str, Any]:
    """Parse CLI/API values; every bad one is reported in one :class:`ParamError`."""
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        try:
            params[name] = parse_option(name, value, table)
        except PropertyStringError as err:
            errors[name] = str(err)
            errors.update({f"{name}.{k}": v for k, v in err.details.items()})
        except FormatError as err:
            errors[name] = str(err)
    if errors:
        raise ParamError(errors)
    return params


# --- parameter checks (§1.1) --------------------------------------------------------------


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Checks done before anything runs; returns the params with ``all`` implied by
    ``exclude`` (unless ``pool`` is given). Raises :class:`ParamError`."""
    errors: dict[str, str] = {}
    if params.get("vmid"):
        for key in ("all", "exclude", "pool"):
            if params.get(key):
                errors[key] = "option conflicts with option 'vmid'"
    if params.get("stdout"):
        if params.get("storage") is not None:
            errors["stdout"] = "cannot use options 'storage' and 'stdout' at the same time"
        vmids = params.get("vmid") or []
        if params.get("all") or params.get("pool") or params.get("exclude") or len(vmids) > 1:
            errors["vmid"] = "you can only backup a single VM with option --stdout"
    if params.get("storage") is not None and params.get("dumpdir") is not None:
        errors["dumpdir"] = "cannot use options 'storage' and 'dumpdir' at the same time"
    for key in ("notes-template", "protected"):
        # nothing is stored with --stdout either: no notes or protection to put anywhere
        if params.get(key) and (params.get("dumpdir") is not None or params.get("stdout")):
            errors["storage"] = f"missing property - '{key}' requires this property"
    result = dict(params)
    if result.get("exclude") is not None and not result.get("pool"):
        result["all"] = True
    if not (result.get("all") or result.get("stop") or result.get("pool") or result.get("vmid")):
        errors.setdefault("vmid", "property is missing")
    if errors:
        raise ParamError(errors)
    return result


# --- precedence (§1.3) ----------------------------------------------------------------------

StoragePrune = Callable[[str], Mapping[str, Any] | None]


def merge_options(
    cli: Mapping[str, Any],
    conf: Mapping[str, Any],
    storage_prune: StoragePrune | None = None,
) -> dict[str, Any]:
    """The effective options: CLI value, else vzdump.conf, else the schema default.

    Exceptions (§1.3): storage/dumpdir come from the conf only if neither is on the CLI (with
    neither anywhere, storage ``local``); exclude-path is conf + CLI; prune-backups is CLI, else
    ``storage_prune(storage)``, else conf, else keep-all (which forces remove=0); performance
    merges per sub-key; the conf's notes-template/protected are dropped without a storage; the
    conf cannot change the guest selection or quiet. ``cli`` and ``conf`` hold parsed values.
    """
    opts = {k: v for k, v in cli.items() if v is not None}
    special = {"storage", "dumpdir", "exclude-path", "prune-backups", "performance"}
    for key, value in conf.items():
        if key not in special and key not in CONF_IGNORED and key not in opts:
            opts[key] = value
    for key, spec in OPTIONS.items():
        if spec.default is not None and key not in opts:
            opts[key] = spec.default
    _merge_target(opts, cli, conf)
    opts["exclude-path"] = [*(conf.get("exclude-path") or []), *(cli.get("exclude-path") or [])]
    opts["performance"] = {
        **PERFORMANCE_DEFAULTS,
        **(conf.get("performance") or {}),
        **(cli.get("performance") or {}),
    }
    _merge_retention(opts, cli, conf, storage_prune)
    return opts


def _merge_target(opts: dict[str, Any], cli: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
    if cli.get("storage") is None and cli.get("dumpdir") is None:
        for key in ("storage", "dumpdir"):
            if conf.get(key) is not None:
                opts[key] = conf[key]
    for key in ("dumpdir", "tmpdir"):
        if opts.get(key):
            opts[key] = opts[key].rstrip("/") or "/"
    if opts.get("storage") is None and opts.get("dumpdir") is None:
        opts["storage"] = DEFAULT_STORAGE
    if opts.get("storage") is None:
        for key in ("notes-template", "protected"):
            if cli.get(key):
                raise ParamError({"storage": f"missing property - '{key}' requires this property"})
            if key not in cli:
                opts.pop(key, None)


def _merge_retention(
    opts: dict[str, Any],
    cli: Mapping[str, Any],
    conf: Mapping[str, Any],
    storage_prune: StoragePrune | None,
) -> None:
    retention = cli.get("prune-backups")
    if retention is None and storage_prune is not None and opts.get("storage") is not None:
        retention = storage_prune(opts["storage"])
    if retention is None:
        retention = conf.get("prune-backups")
    opts["prune-backups"] = dict(retention) if retention is not None else {"keep-all": True}
    if prune.is_keep_all(opts["prune-backups"]):
        opts["remove"] = False


# --- the typed options a backup runs with ---------------------------------------------------


@dataclass(frozen=True)
class BackupOptions:
    """The options one backup job runs with, typed and immutable. Built once per job by
    :meth:`from_values` (from :func:`merge_options`' result, or from the bare parameters when
    that failed); a field's default is its option's default in :data:`OPTIONS`. Each field is
    the option of the same name with ``-`` as ``_``."""

    vmid: tuple[int, ...]
    all: bool
    exclude: tuple[int, ...]
    pool: str | None
    node: str | None
    mode: str
    compress: str
    zstd: int
    pigz: int
    dumpdir: str | None
    storage: str | None
    tmpdir: str | None
    bwlimit: int
    ionice: int
    parallel: int
    lockwait: int
    stopwait: int
    prune_backups: Mapping[str, Any] | None
    remove: bool
    script: str | None
    exclude_path: tuple[str, ...]
    stdexcludes: bool
    quiet: bool
    mailto: tuple[str, ...]
    mailnotification: str
    notification_mode: str
    notify_webhook: str | None
    notes_template: str | None
    protected: bool
    stop: bool
    performance: Mapping[str, Any] | None
    fleecing: Mapping[str, Any] | None
    pbs_change_detection_mode: str | None
    job_id: str | None
    stdout: bool
    verify: bool

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> BackupOptions:
        """From parsed values keyed by option name; a missing one takes its default."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f.name.replace("_", "-")
            value = values.get(key)
            if value is None:
                value = CLI_OPTIONS[key].default
            kwargs[f.name] = _frozen(f.name, value)
        return cls(**kwargs)

    @property
    def compression(self) -> Compression:
        return compress_codec(self.compress)

    @property
    def retention(self) -> Mapping[str, Any]:
        """``prune-backups``, keep-all when unset."""
        return self.prune_backups or {"keep-all": True}


_TUPLES = ("vmid", "exclude", "exclude_path", "mailto")
_MAPPINGS = ("prune_backups", "performance", "fleecing")
_FLAGS = ("all", "remove", "stdexcludes", "quiet", "protected", "stop", "stdout", "verify")


def _frozen(name: str, value: Any) -> Any:
    if name in _TUPLES:
        return tuple(value or ())
    if name in _MAPPINGS:
        return MappingProxyType(dict(value)) if value is not None else None
    if name in _FLAGS:
        return bool(value)
    return value


def exclude_patterns(opts: BackupOptions) -> list[str]:
    """The exclusion list tar gets: conf and CLI ``exclude-path``, then the std excludes."""
    patterns = list(opts.exclude_path)
    if opts.stdexcludes:
        patterns.extend(STD_EXCLUDES)
    return patterns


# --- the job header's command line (§6) ---------------------------------------------------

CMDLINE_SKIP = ("vmid", "stdout", "id", "starttime", "dow", "enabled")
SAFE_WORD_RE = re.compile(r"[\w!%+,\-./:@^]+", re.ASCII)


def shell_quote(word: str) -> str:
    """Quote one word only when needed, like Perl's String::ShellQuote."""
    if word == "":
        return "''"
    if SAFE_WORD_RE.fullmatch(word):
        return word
    quoted = word.replace("'", "'\\''")
    # a run of quotes reads better as '"'''"' than as '\'''\'''\''
    quoted = re.sub(
        r"((?:'\\'')){2,}", lambda m: "'\"" + "'" * (len(m.group(0)) // 4) + "\"'", quoted
    )
    quoted = f"'{quoted}'"
    return quoted.removeprefix("''").removesuffix("''")


def render_cmdline(params: Mapping[str, Any]) -> str:
    """``vzdump <vmids> --key value ...`` for the given params, in their order (§6)."""
    words = ["vzdump"]
    vmid = params.get("vmid")
    if vmid:
        words += [str(v) for v in (parse_vmid_list(vmid) if isinstance(vmid, str) else vmid)]
    for key, value in params.items():
        if key in CMDLINE_SKIP or value is None:
            continue
        if key == "exclude-path":
            items = [value] if isinstance(value, str) else value
            words += [f"--{key} {shell_quote(str(item))}" for item in items]
            continue
        text = _render_value(key, value)
        if key == "notify-webhook" and text:
            from .notify import redact_url  # credentials and tokens stay out of logs and mails

            text = redact_url(text)
        if text != "":
            words.append(f"--{key} {shell_quote(text)}")
    return " ".join(words)


def job_header(params: Mapping[str, Any]) -> str:
    """The first line of a job's log (without the ``INFO: `` prefix)."""
    return f"starting new backup job: {render_cmdline(params)}"


def _render_value(key: str, value: Any) -> str:
    spec = CLI_OPTIONS.get(key)
    if isinstance(value, bool):
        return "1" if value else "0"
    if spec is not None and isinstance(spec.type, PropString) and isinstance(value, str):
        try:  # property strings are re-printed canonically
            value = spec.type.parse(value)
        except FormatError:
            return str(value)
    if spec is not None and not isinstance(value, str):
        return spec.type.render(value)
    return str(value)


__all__ = [
    "CLI_OPTIONS",
    "OPTIONS",
    "STD_EXCLUDES",
    "BackupOptions",
    "Option",
    "PropString",
    "VmidList",
    "check_params",
    "check_webhook_url",
    "exclude_patterns",
    "job_header",
    "merge_options",
    "parse_option",
    "parse_params",
    "parse_vmid_list",
    "render_cmdline",
    "shell_quote",
]
