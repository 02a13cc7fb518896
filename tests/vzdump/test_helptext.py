"""The backup command's help describes every option it lists; a job's help lists its keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vzdump.helptext import DESCRIPTIONS, JOB_DESCRIPTIONS, WIDTH, backup_help, job_options_help
from vzdump.jobs.config import JOB_FIELDS
from vzdump.options import CLI_OPTIONS

VZDUMP = Path(sys.executable).parent / "vzdump"


def _described(lines: list[str], name: str) -> str:
    """The description of ``--name`` (its lines after the name's own, joined)."""
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  --{name} "))
    text = []
    for line in lines[at + 1 :]:
        if not line.startswith(" " * 31) or line.startswith("  --"):
            break
        text.append(line.strip())
    return " ".join(text)


def test_every_option_has_a_description() -> None:
    missing = [name for name in CLI_OPTIONS if not DESCRIPTIONS.get(name)]
    assert missing == []
    lines = backup_help().splitlines()
    for name in CLI_OPTIONS:
        if name != "vmid":
            assert _described(lines, name) == DESCRIPTIONS[name]
    assert max(map(len, lines)) <= WIDTH  # a long one was 122 columns


def test_ctkit_additions_say_so() -> None:
    for name in ("parallel", "verify", "notify-webhook"):
        assert DESCRIPTIONS[name].startswith("ctkit: ")


def test_a_jobs_help_lists_every_key_a_job_takes() -> None:
    """``vzdump job add --help`` showed only --help, though --schedule is required and every
    vzdump option is stored."""
    lines = job_options_help().splitlines()
    listed = [line.split()[0][2:] for line in lines if line.startswith("  --")]
    assert sorted(listed) == sorted(JOB_FIELDS)
    for name, (_value, text) in JOB_DESCRIPTIONS.items():
        assert _described(lines, name) == text
    assert max(map(len, lines)) <= WIDTH


@pytest.mark.parametrize("argv", [["--help"], ["job", "add", "--help"], ["job", "set", "--help"]])
def test_the_helps_as_printed(tmp_path: Path, argv: list[str]) -> None:
    env = {"CTKIT_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    out = subprocess.run([str(VZDUMP), *argv], capture_output=True, text=True, env=env).stdout
    assert out and max(map(len, out.splitlines())) <= 100
    if argv[0] == "job":
        assert "  --schedule " in out and "  --repeat-missed " in out and "  --mailto " in out
        assert out.count("  --delete ") == (argv[1] == "set")
