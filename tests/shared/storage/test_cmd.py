from __future__ import annotations

import pytest

from shared.errors import CommandError
from shared.storage import cmd


def test_run_returns_stdout_in_the_c_locale() -> None:
    assert cmd.run(["sh", "-c", "echo $LC_ALL"]) == "C\n"
    assert cmd.run(["sh", "-c", "exit 3"], ok_codes=(0, 3)) == ""


def test_failure_names_the_command_and_the_last_error_line() -> None:
    with pytest.raises(CommandError) as exc:
        cmd.run(["sh", "-c", "echo one >&2; echo 'two words' >&2; exit 4", "x y"])
    assert str(exc.value) == (
        "command 'sh -c 'echo one >&2; echo '\"'\"'two words'\"'\"' >&2; exit 4' 'x y'' failed: "
        "exit code 4 - two words"
    )
    with pytest.raises(CommandError, match=r"^command 'no-such-tool-x' not found$"):
        cmd.run(["no-such-tool-x"])


def test_succeeds() -> None:
    assert cmd.succeeds(["true"])
    assert not cmd.succeeds(["false"])
    assert not cmd.succeeds(["no-such-tool-x"])


CLEANUP = """
import os, signal, sys, time
from shared import signals
from shared.storage import cmd
with signals.interruptible():
    try:
        with signals.held():
            print("held", flush=True)
            print(cmd.run(["sh", "-c", "sleep 1; echo finished"]), end="", flush=True)
        signals.raise_if_interrupted()  # the signal was noted for after the cleanup
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def test_a_ctrl_c_to_the_group_never_kills_a_tool_of_held_cleanup() -> None:
    """The terminal's SIGINT reached the tools too: a cleanup's losetup died (exit -2) and
    the volume it was to free stayed, named by nothing."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLEANUP], cwd=repo, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    import time

    time.sleep(0.3)  # the tool runs
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, _ = proc.communicate(timeout=30)
    assert out == "finished\ninterrupted\n"
