"""``vzdump <vmid...> | --all [options]``: the backup job itself (the app's default command)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

from shared import stdio
from shared.cli import EXTRA_ARGS, OPTION_RE, parse_schema_args, schema_options
from shared.formats.types import Bool

from ..helptext import backup_help
from ..options import CLI_OPTIONS, check_params, parse_params


def is_bool_option(key: str) -> bool:
    return key in CLI_OPTIONS and isinstance(CLI_OPTIONS[key].type, Bool)


def is_known_option(key: str) -> bool:
    return key in CLI_OPTIONS


def split_args(args: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Leading words are the VMID list; the rest are ``--option value`` pairs."""
    positional: list[str] = []
    rest = list(args)
    while rest and not OPTION_RE.match(rest[0]):
        positional.append(rest.pop(0))
    options = parse_schema_args(
        rest,
        is_known=is_known_option,
        is_bool=is_bool_option,
        is_array=lambda k: k in CLI_OPTIONS and CLI_OPTIONS[k].array,
        is_list=lambda k: k in CLI_OPTIONS and CLI_OPTIONS[k].type.joins_repeats,
    )
    if positional:
        options["vmid"] = " ".join(positional)
    return positional, options


def register(app: typer.Typer) -> None:
    app.command(
        "backup",
        hidden=True,
        context_settings=EXTRA_ARGS,
        help=backup_help(),
        options_metavar="{<vmid>} [OPTIONS]",
    )(schema_options(is_bool_option, is_known_option)(backup))


def silence(keep_stdout: bool) -> None:
    """``--quiet``: stderr (and stdout, unless the archive goes there) to /dev/null, for this
    process and the tools it runs; the per-guest log files are still written."""
    sys.stderr.flush()
    stdio.to_devnull(2)
    if not keep_stdout:
        sys.stdout.flush()
        stdio.to_devnull(1)


def backup(ctx: typer.Context) -> None:
    """Back up containers: vzdump <vmid...> | --all [--mode stop|suspend|snapshot] ..."""
    from ..engine import job

    _vmids, raw = split_args(ctx.args)
    params = parse_params(raw)
    selection = check_params(params)
    if params.get("quiet"):
        silence(keep_stdout=bool(params.get("stdout")))
    if params.get("stop"):
        job.stop_running()
        if not (selection.get("vmid") or selection.get("all") or selection.get("pool")):
            return
    stdout = stdio.keep_stdout_for_data() if params.get("stdout") else None
    job.run(params, stdout=stdout)
