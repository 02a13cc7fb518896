"""User scripts run as Proxmox runs them: a script without ``#!`` through /bin/sh, failures
in Proxmox's words."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared import userscript


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_script_without_an_interpreter_line_runs_through_sh(tmp_path: Path) -> None:
    script = _script(tmp_path / "hook", 'echo "ran $1"\n')
    with userscript.popen([str(script), "job-start"], stdout=subprocess.PIPE) as proc:
        out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, b"ran job-start\n")


def test_a_bad_interpreter_line_is_an_error_not_a_shell_run(tmp_path: Path) -> None:
    """A ``#!/bin/sh`` line with a carriage return (CRLF) names no interpreter: as execvp,
    no fallback to /bin/sh, and the message is Proxmox's."""
    script = _script(tmp_path / "hook", "#!/bin/sh\r\necho ran\r\n")
    with pytest.raises(OSError) as info:
        userscript.popen([str(script), "x"])
    assert userscript.not_started([str(script), "x"], info.value) == (
        f"command '{script} x' failed: No such file or directory"
    )


def test_failures_read_as_proxmox_words() -> None:
    assert userscript.failure(["/h", "a"], 3) == "command '/h a' failed: exit code 3"
    assert userscript.failure(["/h", "a"], -9) == "command '/h a' failed: got signal 9"
