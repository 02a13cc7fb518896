"""The command surface of the console script: prefixes, usage lines, help, root check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared.errors import CtkitError, ParamError
from tests.pveam.conftest import PVEAM, Pveam, clean_env

COMMANDS = [
    "update",
    "available",
    "download",
    "list",
    "remove",
    "help",
    "key",
    "source",
    "index",
    "timer",
]


def test_help_lists_every_command(pveam: Pveam) -> None:
    res = pveam("--help")
    assert res.code == 0
    listed = [ln.split()[0] for ln in res.out.split("Commands:")[1].splitlines() if ln.strip()]
    assert listed == COMMANDS
    res = pveam("help", "dow")
    assert res.code == 0 and res.out.startswith("Usage: pveam download [OPTIONS]")
    res = pveam("help", "source", "a")
    assert res.code == 0 and res.out.startswith("Usage: pveam source add")
    assert pveam("help", "nope").code == ParamError.exit_code


def test_no_command_or_an_unknown_one(pveam: Pveam) -> None:
    res = pveam()
    assert (res.code, res.out) == (ParamError.exit_code, "")
    assert res.err.startswith("Usage: pveam [OPTIONS] COMMAND")
    res = pveam("key")
    assert res.err.startswith("Usage: pveam key [OPTIONS] COMMAND") and res.code == 2
    res = pveam("frobnicate")
    assert res.code == ParamError.exit_code and "No such command 'frobnicate'" in res.err


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        (["download", "local"], "400 not enough arguments\npveam download <storage> <template>\n"),
        (["list"], "400 not enough arguments\npveam list <storage> [OPTIONS]\n"),
        (["remove"], "400 not enough arguments\npveam remove <template_path>\n"),
        (["available", "x"], "400 too many arguments\npveam available  [OPTIONS]\n"),
        (["up", "x"], "400 too many arguments\npveam update\n"),
    ],
)
def test_usage_lines(pveam: Pveam, argv: list[str], err: str) -> None:
    res = pveam(*argv)
    assert (res.code, res.out, res.err) == (ParamError.exit_code, "", err)


def test_must_run_as_root(pveam: Pveam, tmp_path: Path) -> None:
    probe = subprocess.run(
        [str(PVEAM), "--help"], user=65534, capture_output=True, check=False, cwd="/"
    )
    if probe.returncode != 0:
        pytest.skip("the virtual environment is not readable by 'nobody'")
    proc = subprocess.run(
        [str(PVEAM), "list", "local"],
        user=65534,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert (proc.returncode, proc.stdout) == (CtkitError.exit_code, "")
    assert proc.stderr == "please run as root\n"
    assert os.listdir(tmp_path) == [] or not (tmp_path / "var").exists()
