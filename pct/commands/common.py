"""Argument types and helpers shared by pct's command modules."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from shared.cli import parse_schema_args, vmid_value
from shared.errors import CtkitError, ParamError
from shared.formats.types import Bool

VmidArg = Annotated[int, typer.Argument(parser=vmid_value, metavar="vmid", show_default=False)]
Bwlimit = Annotated[int | None, typer.Option(min=0, help="Override I/O bandwidth limit (KiB/s).")]


def is_bool_option(key: str) -> bool:
    from shared.ctconfig.options import option_spec  # the schema: only for commands that set

    spec = option_spec(key)
    return spec is not None and isinstance(spec.type, Bool)


def is_known_option(key: str) -> bool:
    from shared.ctconfig.options import is_settable

    return is_settable(key)


def is_list_option(key: str) -> bool:
    from shared.ctconfig.options import option_spec

    spec = option_spec(key)
    return spec is not None and spec.type.joins_repeats


def config_options(extra: Sequence[str]) -> dict[str, str]:
    """The container options (``-memory 512 -net0 ...``) a command received as extra args."""
    return parse_schema_args(
        extra, is_known=is_known_option, is_bool=is_bool_option, is_list=is_list_option
    )


def echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def log_line(line: str) -> None:
    """Task output, as Proxmox prints a worker's log on the console."""
    print(line, flush=True)


def _read_secret(prompt: str) -> str:
    """A password from the terminal, or from stdin where there is none: Python's warning that
    it cannot turn the echo off there (with a line of its own source) says nothing to a
    script that pipes the password in."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        return getpass.getpass(prompt)


def ask_password(read: Callable[[str], str] = _read_secret) -> str:
    """Proxmox asks twice when ``--password`` has no value."""
    try:
        first = read("Enter password: ")
        again = read("Retype password: ")
    except EOFError:  # no terminal and nothing on stdin: it ended as if interrupted (130)
        raise ParamError({"password": "no password given (end of input)"}) from None
    if again != first:
        raise CtkitError("Passwords do not match.")
    return first
