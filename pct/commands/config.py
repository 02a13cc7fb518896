"""pct config, pending, set, unlock, list, status."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from shared.cli import EXTRA_ARGS, OutputFormat, OutputFormatOption, print_json, schema_options

from .common import VmidArg, config_options, echo, is_bool_option, is_known_option, log_line

# the library is imported inside each command: a command loads only what it uses


def register(app: typer.Typer) -> None:
    app.command("config")(config)
    app.command("pending")(pending)
    app.command("set", context_settings=EXTRA_ARGS)(
        schema_options(is_bool_option, is_known_option)(set_)
    )
    app.command("unlock")(unlock)
    app.command("list")(list_)
    app.command("status")(status)


def config(
    vmid: VmidArg,
    current: Annotated[bool | None, typer.Option(help="Show only applied values.")] = None,
    snapshot: Annotated[str | None, typer.Option(help="Show a snapshot's values.")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Show the container configuration (pending values merged in)."""
    from shared.ctconfig import store
    from shared.ctconfig.render import config_dict, render_config

    conf = store.load(vmid)
    _parse_warnings(conf.warnings)
    if output_format is OutputFormat.text:
        echo(render_config(conf, current=bool(current), snapshot=snapshot))
    else:
        print_json(config_dict(conf, current=bool(current), snapshot=snapshot), output_format)


def _parse_warnings(warnings: list[str]) -> None:
    """What the lenient parse could not read, on stderr (as Proxmox warns): the output stays
    the config alone."""
    for warning in warnings:
        print(warning, file=sys.stderr)


def pending(vmid: VmidArg, output_format: OutputFormatOption = OutputFormat.text) -> None:
    """Show current and pending values."""
    from shared.ctconfig import store
    from shared.ctconfig.render import pending_list, render_pending

    conf = store.load(vmid)
    _parse_warnings(conf.warnings)
    if output_format is OutputFormat.text:
        echo(render_pending(conf))
    else:
        print_json(pending_list(conf), output_format)


def set_(
    ctx: typer.Context,
    vmid: VmidArg,
    delete: Annotated[
        list[str] | None,
        typer.Option(metavar="<str>", help="Options to delete (a list; may be repeated)."),
    ] = None,
    revert: Annotated[
        list[str] | None,
        typer.Option(metavar="<str>", help="Pending changes to revert (a list; may be repeated)."),
    ] = None,
    digest: Annotated[str | None, typer.Option(help="Refuse if the config changed.")] = None,
    force: Annotated[bool | None, typer.Option(help="Force removal of unusedN.")] = None,
) -> None:
    """Set container options (any option of the container config, e.g. -memory 1024)."""
    from ..ops import setconf

    values = config_options(ctx.args)
    setconf.set_config(
        vmid,
        values,
        delete=",".join(delete or []),  # --delete a --delete b: both, as Proxmox's -list
        revert=",".join(revert or []),
        digest=digest,
        force=bool(force),
        log=log_line,
    )


def unlock(vmid: VmidArg) -> None:
    """Remove any lock of the container."""
    from ..ops import setconf

    setconf.unlock(vmid, log=log_line)


def list_(output_format: OutputFormatOption = OutputFormat.text) -> None:
    """List the containers of this node."""
    from shared.errors import ConfigError

    from ..ops import query

    problems: list[str] = []
    rows = query.list_rows(problems)
    warning = query.storage_warning()
    if warning:
        print(warning, file=sys.stderr)
    if output_format is OutputFormat.text:
        echo(query.render_list(rows))
    else:
        print_json(rows, output_format)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        raise ConfigError(f"{len(problems)} container config(s) could not be read")


def status(
    vmid: VmidArg,
    verbose: Annotated[bool | None, typer.Option(help="Show every status field.")] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Show the container status."""
    from ..ops import query

    data = query.status(vmid, verbose=bool(verbose))
    if output_format is OutputFormat.text:
        echo(query.render_status(data))
    else:
        print_json(data, output_format)
