"""The console scripts ``pct``, ``vzdump`` and ``pveam``: each imports its app, then runs it.

A command spends its first 0.05-0.1 s importing what it needs. A Ctrl-C then (a command
stopped as soon as it was started) raised ``KeyboardInterrupt`` in whatever module was loading,
and Python printed that import's traceback and died of the signal. Nothing has been done at that
point, so the command ends as any interrupted one does: one line, exit 130. The same holds for
TERM and HUP, and for an interrupt that reaches this level from anywhere else outside the
command's own handling.
"""

from __future__ import annotations

import gc
import importlib
import sys

# The collector's first threshold for the command's run (Python's default: 700). A command makes
# tens of thousands of objects as it loads the modules its work needs (``pct create`` its whole
# storage, archive and guest code, after the app), and almost none of them is garbage; at 700
# each 700 made cost a young collection, about 6 ms of a ``pct create``. At 25,000 that run
# makes none, and a long run still collects its cycles, every 25,000 new objects.
YOUNG_THRESHOLD = 25_000


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_app(app: str) -> None:
    """Import ``<app>.cli`` and run its ``main``. This module imports nothing of its own before
    that: a Ctrl-C while it loads is still Python's traceback, so its own load stays short.
    The methods of the app's dataclasses and its regular expressions come ready-compiled
    (``classcode``, ``regexcode``).
    The collector waits while the app loads and then leaves what it loaded alone (``gc.freeze``:
    modules, classes and functions live until the exit, and a worker forked later keeps
    sharing their pages instead of copying those the collector would write to).
    TERM and HUP end a loading command as Ctrl-C does (they killed it silently, 143 and 129),
    unless whoever started it ignores them (``nohup``)."""
    gc.disable()
    try:
        import signal  # with enum, which the interpreter's start has loaded: a moment

        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, _interrupt)
        from . import classcode, regexcode

        regexcode.install()  # first: dataclasses' own imports compile patterns
        classcode.install()
        main = importlib.import_module(f"{app}.cli").main
        collect_after_start()
        main()
    except KeyboardInterrupt:
        from .errors import Interrupted

        print(Interrupted().message, file=sys.stderr)
        sys.exit(Interrupted.exit_code)


def collect_after_start() -> None:
    """The collector back on for the command's run, with what the start made set aside."""
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, gen1, gen2)
    gc.enable()


def pct() -> None:
    run_app("pct")


def vzdump() -> None:
    run_app("vzdump")


def pveam() -> None:
    run_app("pveam")
