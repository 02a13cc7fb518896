"""``help [command]`` for every app, ``vzdump --help`` showing the backup command's usage and
all its options, and every option of every command listed, with a text, in its ``--help``
(issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from pct.cli import app as pct_app
from pveam.cli import app as pveam_app
from shared import cli
from vzdump.cli import app as vzdump_app
from vzdump.options import CLI_OPTIONS

APPS = {"pct": (pct_app, None), "vzdump": (vzdump_app, "backup"), "pveam": (pveam_app, None)}


def run(prog: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    app, default = APPS[prog]
    with pytest.raises(SystemExit) as exc:
        cli.run(app, prog, args, default_command=default)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def commands(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.core.TyperGroup):
            yield from commands(cmd, [*path, name])
        else:
            yield [*path, name], cmd


@pytest.mark.parametrize("prog", sorted(APPS))
def test_every_option_of_every_command_is_in_its_help(
    prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = typer.main.get_command(APPS[prog][0])
    for path, cmd in commands(root, []):
        if cmd.hidden:
            continue
        code, text = run(prog, [*path, "--help"], capsys)
        assert code == 0, (path, text)
        for param in cmd.params:
            if param.param_type_name == "option" and not param.hidden:
                assert param.opts[0] in text, (path, param.opts)
                assert (param.help or "").strip(), (prog, path, param.opts, "no help")
        # Proxmox's spelling gives the same page
        assert run(prog, ["help", *path], capsys) == (0, text)


def test_pct_help_lists_the_host_lifecycle_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run("pct", ["help"], capsys)
    assert code == 0
    for name in ("suspend", "resume", "template", "clone", "move-volume", "startall",
                 "stopall", "rescan", "fsck", "autostart"):  # fmt: skip
        assert f"  {name} " in text
    assert "move_volume" not in text  # the alias works but is not listed twice


def test_vzdump_help_shows_the_backup_usage_and_all_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text = run("vzdump", ["--help"], capsys)
    assert code == 0
    assert text.startswith("Usage: vzdump {<vmid>} [OPTIONS]\n")
    for name in CLI_OPTIONS:
        if name != "vmid":
            assert f"--{name} " in text, name
    assert "<snapshot | suspend | stop>   (default=snapshot)" in text
    for sub in ("prune", "job", "scheduler", "timer"):
        assert f"  {sub} " in text
    assert run("vzdump", ["help"], capsys) == (0, text)
    assert run("vzdump", ["-h"], capsys) == (0, text)


@pytest.mark.parametrize("command", ["create", "set", "restore"])
def test_container_options_are_listed_where_they_are_accepted(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.ctconfig.options import FIXED, INDEXED

    code, text = run("pct", [command, "--help"], capsys)
    assert code == 0
    for key, spec in FIXED.items():
        assert (f"--{key} " in text) != spec.internal, key
    for family in INDEXED:
        assert f"--{family}[0.." in text
    assert "--mp[0..255] [volume=]<volume>,mp=<Path>[,size=" in text
