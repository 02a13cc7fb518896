"""A Python snippet run as its own process from the checkout and stopped midway: it prints one
line where it waits (holding whatever it holds then), so that a test can kill it right there."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def stopped_midway(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -c script args`` and wait for its first line; returns the process (the
    caller kills it) and that line, without its newline."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, cwd=CHECKOUT
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().removesuffix("\n")


def interrupted_midway(script: str, *args: str, at: str, sig: int = signal.SIGINT) -> str:
    """Run ``script`` until it prints the line ``at``, send it ``sig`` there and return what it
    printed after that line."""
    proc, line = stopped_midway(script, *args)
    try:
        assert line == at, line
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return out
