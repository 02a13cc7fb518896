"""A Python snippet run as its own process from the checkout and stopped midway: it prints one
line where it waits (holding whatever it holds then), so that a test can kill it right there.

A snippet that waits for a signal calls :func:`hold` after its line, and the test sends the
signal with :func:`signal_midway`: the hold ends when the test says so. It used to sleep one
second, and a test descheduled for longer than that sent its signal into a later step."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
GO_ENV = "CTKIT_TEST_MIDWAY_GO"  # the file whose creation ends a snippet's hold
HOLD_LIMIT = 60.0  # a test that never says go: the snippet goes on after this
_GO: dict[int, Path] = {}  # a started snippet's pid: its go file


def stopped_midway(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -c script args`` and wait for its first line; returns the process (the
    caller kills it) and that line, without its newline."""
    scratch = tempfile.mkdtemp(prefix="ctkit-midway-")
    go = Path(scratch) / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, cwd=CHECKOUT,
        env={**os.environ, GO_ENV: str(go)},
    )  # fmt: skip
    _GO[proc.pid] = go
    weakref.finalize(proc, shutil.rmtree, scratch, True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().removesuffix("\n")


def signal_midway(proc: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to a snippet that holds after its line, then let its hold end."""
    proc.send_signal(sig)
    _GO[proc.pid].touch()


def hold() -> None:
    """In a snippet, after its line: wait until the test has sent its signal (or a minute)."""
    go = os.environ.get(GO_ENV)
    deadline = time.monotonic() + HOLD_LIMIT
    while go and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)


def interrupted_midway(script: str, *args: str, at: str, sig: int = signal.SIGINT) -> str:
    """Run ``script`` until it prints the line ``at``, send it ``sig`` there and return what it
    printed after that line."""
    proc, line = stopped_midway(script, *args)
    try:
        assert line == at, line
        signal_midway(proc, sig)
        out, _err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return out
