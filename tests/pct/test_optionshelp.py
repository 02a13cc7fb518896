"""The container options in the help of pct create/set/restore: made when shown, once."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer import _click as click

from pct.cli import app
from pct.commands.optionshelp import TAKES_CONFIG_OPTIONS


def test_help_shows_the_option_table_once_each_time() -> None:
    root = typer.main.get_command(app)
    for name in TAKES_CONFIG_OPTIONS:
        cmd = root.commands[name]  # type: ignore[attr-defined]
        for _ in range(2):
            text = cmd.get_help(click.Context(cmd, info_name=name))
            assert text.count("Container options (any key of the config") == 1
            assert "--memory " in text and "--net[0..31] " in text and "--mp[0..255] " in text


def test_the_schema_is_loaded_only_for_the_help() -> None:
    script = (
        "import sys, typer; from pct.cli import app; typer.main.get_command(app); "
        "print('shared.ctconfig.options' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_command_option_is_not_listed_again_with_the_configs_default() -> None:
    """``create --help`` gave --unprivileged twice: its own option (default 1) and the config
    key's line (default=0, which is what a config without the key means). A key the command
    takes as its own option is listed once, with the command's default."""
    root = typer.main.get_command(app)
    texts = {}
    for name in TAKES_CONFIG_OPTIONS:
        cmd = root.commands[name]  # type: ignore[attr-defined]
        texts[name] = cmd.get_help(click.Context(cmd, info_name=name))
    for name in ("create", "restore"):
        assert texts[name].count("--unprivileged") == 1, texts[name]
        assert "--unprivileged <boolean>" not in texts[name]
    assert "--unprivileged <boolean>   (default=0)" in texts["set"]
