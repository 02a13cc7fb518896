"""typer's parameter conversion without pydantic, for the plain types ctkit's commands take.

typer (0.29) converts every value given to a parameter through a pydantic ``TypeAdapter`` built
on first use: importing pydantic and building the adapters costs more than all the rest of an
interactive command such as ``pct status``. The annotations ctkit uses (an int with bounds, str,
bool, an enum, a Path, a ``parser=`` function, lists of those) are converted here exactly as
typer's adapters would. Anything else, and every value that does not convert cleanly, goes to
typer's own conversion, so results and error messages stay typer's to the letter. This leans
on typer's internals (``typer._coercion``), which is why pyproject pins typer below 0.30;
tests/shared/test_cliparams.py compares both conversions value by value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer import _click as click
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import choice_coercion_annotation, coerce_cli_choice, coerce_cli_path
from typer._typing import get_args, get_origin
from typer.models import ParameterInfo

# what pydantic's lax int accepts from a string, restricted to the obvious
_INT_RE = re.compile(r"-?[0-9]{1,18}")


class _Fallback(Exception):
    """The value needs typer's own (pydantic) conversion."""


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: Any, ctx: click.Context) -> Any:
        try:
            return convert(self.annotation, self.parameter_info, value, ctx, param)
        except _Fallback:
            typer_param = build_runtime_param(self.descriptor)
            return typer_param._coerce_value(value, param=param, ctx=ctx)


def convert(
    annotation: Any, info: ParameterInfo, value: Any, ctx: click.Context | None, param: Any
) -> Any:
    """``value`` as typer's adapter for ``annotation`` returns it; :class:`_Fallback` if unsure."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        values = value if isinstance(value, list | tuple) else [value]
        return [convert(item, info, v, ctx, param) for v in values]
    if get_origin(annotation) is not None:
        raise _Fallback
    if info.parser is not None:
        try:
            return info.parser(value)
        except click.exceptions.ClickException:
            raise  # pydantic lets these through unchanged
        except Exception:
            raise _Fallback from None
    choice = choice_coercion_annotation(annotation, info)
    if choice is not None:
        try:
            return coerce_cli_choice(value, choices=choice[0], case_sensitive=choice[1], ctx=ctx)
        except ValueError:
            raise _Fallback from None
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int:
        return _int(value, info)
    if annotation is Path and info.path_type is None and isinstance(value, str):
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    raise _Fallback


def _int(value: Any, info: ParameterInfo) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_RE.fullmatch(value):
        number = int(value)
    else:
        raise _Fallback
    low, high = info.min, info.max
    if info.clamp:
        if low is not None and number < low:
            return int(low)
        if high is not None and number > high:
            return int(high)
    elif (low is not None and number < low) or (high is not None and number > high):
        raise _Fallback  # typer's message for the bound
    return number


def use_plain_conversion(command: Any) -> None:
    """Give the parameters of one click command the conversion above (before it parses)."""
    params = list(getattr(command, "params", []))
    # click makes the --help option on demand; its value goes through the conversion too
    ctx = click.Context(command, **(getattr(command, "context_settings", None) or {}))
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if not isinstance(descriptor, TypeDescriptor) or descriptor.file_annotation is not None:
            continue
        if getattr(param, "_runtime_param", None) is None:
            param._runtime_param = PlainRuntimeParam(
                parameter_info=descriptor.parameter_info,
                annotation=descriptor.annotation,
                descriptor=descriptor,
            )
