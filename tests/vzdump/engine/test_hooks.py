"""The ``--script`` hook's output as it is logged (no container needed)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from shared import signals
from shared.errors import CommandError
from vzdump.engine import hooks
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


def test_a_hook_without_an_interpreter_line_runs_as_on_proxmox(tmp_path: Path) -> None:
    """Proxmox's exec hands a script without ``#!`` to /bin/sh; here the job failed at its
    first phase. A hook killed by a signal says so in Proxmox's words."""
    script = tmp_path / "hook.sh"
    script.write_text(
        'echo "phase $1 mode $2 vmid $3"\nif [ "$1" = backup-end ]; then kill -9 $$; fi\n'
    )
    script.chmod(0o755)
    lines: list[str] = []
    Hooks(str(script), lines.append).run("backup-start", "stop", 101)
    assert lines == ["phase backup-start mode stop vmid 101"]
    with pytest.raises(CommandError, match=r"backup-end stop 101' failed: got signal 9$"):
        Hooks(str(script), lines.append).run("backup-end", "stop", 101)


def test_output_is_logged_as_it_comes_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output was collected whole, then split: a hook printing 100 MB took 600 MB."""
    monkeypatch.setattr(hooks, "MAX_LINES", 1000)
    script = tmp_path / "hook.sh"
    seen = tmp_path / "seen"
    # the hook goes on once its first line has been logged (or after 30 s, saying so)
    script.write_text(
        f"#!/bin/sh\necho first\nn=0\nwhile [ ! -e {seen} ] && [ $n -lt 300 ]; do\n"
        "    sleep 0.1; n=$((n + 1))\ndone\n"
        f"[ -e {seen} ] || echo 'first line not logged in time'\nseq 5000\nprintf 'no end'\n"
    )
    script.chmod(0o755)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line == "first":
            seen.touch()

    Hooks(str(script), log).run("job-end")
    assert lines[0] == "first" and "first line not logged in time" not in lines
    assert len(lines) == 1001 and lines[999] == "999"
    assert lines[-1] == "(4002 more lines of hook output not logged)"


def test_an_interrupt_ends_what_the_hook_left_running(tmp_path: Path) -> None:
    """A hook that exited with a child still holding its output: on SIGTERM the hook was
    reaped first, its group was not known any more, and the child lived on."""
    marker = tmp_path / "child.pid"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {marker}\nexit 0\n")
    script.chmod(0o755)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    with signals.interruptible():
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            Hooks(str(script), lambda line: None).run("job-end")
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()


def test_a_hook_that_never_pauses_is_interrupted_in_a_worker_thread(tmp_path: Path) -> None:
    """A thread other than the main one hears of a signal only when it asks; it asked only while the
    hook was quiet, and a hook printing without a pause was never interrupted."""
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexec yes\n")
    script.chmod(0o755)
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            Hooks(str(script), lambda line: None).run("job-start")
        except BaseException as err:
            outcome.append(err)

    with signals.interruptible():
        thread = threading.Thread(target=worker)
        with signals.held():  # the main thread waits while another works
            thread.start()
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)
            thread.join(10)
        alive = thread.is_alive()
    assert not alive and len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt)
