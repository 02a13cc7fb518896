"""The ``--script`` hook's output as it is logged (no container needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import CommandError
from vzdump.engine.hooks import Hooks


def test_output_lines_are_logged_printable(tmp_path: Path) -> None:
    """A hook's output goes to the terminal, the log files and the mail: an escape sequence
    or a NUL in it (a guest's name, a file it printed) went there raw."""
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nprintf 'phase %s\\n\\033[2Jcleared\\000nul\\ttab\\n' \"$1\"\n")
    script.chmod(0o755)
    lines: list[str] = []
    Hooks(str(script), lines.append).run("job-start")
    assert lines == ["phase job-start", "\\x1b[2Jcleared\\x00nul\ttab"]


def test_a_failing_hook_still_logs_its_output(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\necho why\nexit 3\n")
    script.chmod(0o755)
    lines: list[str] = []
    with pytest.raises(CommandError, match=r"job-end' failed: exit code 3$"):
        Hooks(str(script), lines.append).run("job-end")
    assert lines == ["why"]
