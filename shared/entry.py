"""The console scripts ``pct``, ``vzdump`` and ``pveam``: each imports its app, then runs it.

A command spends its first 0.05-0.1 s importing what it needs. A Ctrl-C then (a command
stopped as soon as it was started) raised ``KeyboardInterrupt`` in whatever module was loading,
and Python printed that import's traceback and died of the signal. Nothing has been done at that
point, so the command ends as any interrupted one does: one line, exit 130. The same holds for
TERM and HUP, and for an interrupt that reaches this level from anywhere else outside the
command's own handling.
"""

from __future__ import annotations

import importlib
import sys


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_app(app: str) -> None:
    """Import ``<app>.cli`` and run its ``main``. This module imports nothing of its own before
    that: a Ctrl-C while it loads is still Python's traceback, so its own load stays short.
    The methods of the app's dataclasses come ready-compiled (``classcode``).
    TERM and HUP end a loading command as Ctrl-C does (they killed it silently, 143 and 129),
    unless whoever started it ignores them (``nohup``)."""
    try:
        import signal  # with enum, which the interpreter's start has loaded: a moment

        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, _interrupt)
        from . import classcode

        classcode.install()
        main = importlib.import_module(f"{app}.cli").main
        main()
    except KeyboardInterrupt:
        from .errors import Interrupted

        print(Interrupted().message, file=sys.stderr)
        sys.exit(Interrupted.exit_code)


def pct() -> None:
    run_app("pct")


def vzdump() -> None:
    run_app("vzdump")


def pveam() -> None:
    run_app("pveam")
