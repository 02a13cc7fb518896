"""shared.cliparams converts parameter values exactly as typer's own (pydantic) conversion."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer import _click as click
from typer._coercion import build_runtime_param

from shared.cli import vmid_value
from shared.cliparams import PlainRuntimeParam, use_plain_conversion


class Color(enum.StrEnum):
    red = "red"
    dark_blue = "dark-blue"


def _command(
    vmid: Annotated[int, typer.Argument(parser=vmid_value)],
    count: Annotated[int, typer.Option(min=0, max=7200)] = 5,
    clamped: Annotated[int, typer.Option(min=1, max=10, clamp=True)] = 3,
    plain: int | None = None,
    name: str | None = None,
    flag: bool | None = None,
    color: Color = Color.red,
    file: Path | None = None,
    words: Annotated[list[str] | None, typer.Option()] = None,
    numbers: Annotated[list[int] | None, typer.Option()] = None,
) -> None:
    pass


def _params() -> tuple[click.Command, dict[str, Any]]:
    app = typer.Typer()
    app.command()(_command)
    cmd = typer.main.get_command(app)
    return cmd, {p.name: p for p in cmd.params}


def _outcome(runtime: Any, value: Any, param: Any, ctx: click.Context) -> tuple[str, Any]:
    try:
        return "ok", runtime.coerce(value, param=param, ctx=ctx)
    except click.exceptions.BadParameter as err:
        return "error", err.message


def _compare(name: str, value: Any) -> tuple[str, Any]:
    cmd, params = _params()
    ctx = click.Context(cmd)
    param = params[name]
    d = param.type_descriptor
    plain = PlainRuntimeParam(
        parameter_info=d.parameter_info, annotation=d.annotation, descriptor=d
    )
    ours = _outcome(plain, value, param, ctx)
    theirs = _outcome(build_runtime_param(d), value, param, ctx)
    assert ours == theirs
    assert type(ours[1]) is type(theirs[1])
    return ours


CASES = [
    ("vmid", "900000001"),
    ("vmid", "99"),
    ("vmid", "abc"),
    ("count", "0"),
    ("count", "7200"),
    ("count", "7201"),
    ("count", "-1"),
    ("count", "12x"),
    ("count", " 12"),
    ("count", "1_000"),
    ("count", "+5"),
    ("count", 5),
    ("clamped", "0"),
    ("clamped", "11"),
    ("clamped", "4"),
    ("plain", "-3"),
    ("plain", "00017"),
    ("plain", "1e3"),
    ("plain", "99999999999999999999999"),
    ("name", "x y"),
    ("name", ""),
    ("flag", True),
    ("flag", False),
    ("flag", "yes"),
    ("color", "red"),
    ("color", "dark-blue"),
    ("color", "Red"),
    ("color", "green"),
    ("color", Color.red),
    ("file", "/etc/hostname"),
    ("file", "relative/x"),
    ("file", ""),
    ("words", ("a", "b")),
    ("numbers", ("1", "2")),
    ("numbers", ("1", "x")),
]


@pytest.mark.parametrize(("name", "value"), CASES)
def test_plain_conversion_is_typers(name: str, value: Any) -> None:
    _compare(name, value)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789-+ _.ex", max_size=8))
def test_int_strings_convert_as_typer_does(text: str) -> None:
    _compare("count", text)
    _compare("plain", text)


def test_installed_on_the_command_and_its_help_option() -> None:
    cmd, params = _params()
    use_plain_conversion(cmd)
    assert all(isinstance(p._runtime_param, PlainRuntimeParam) for p in params.values())
    help_option = cmd.get_help_option(click.Context(cmd))
    assert isinstance(help_option._runtime_param, PlainRuntimeParam)
