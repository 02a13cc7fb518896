"""Ending a command's process without the interpreter's teardown.

At exit, Python frees every module and object one by one; after a command that imported its
few hundred modules that took 20-50 ms on the reference VM (measured with strace: the last
signal handler reset, then no system call until ``exit_group``), a fifth of an interactive
command and nothing a command needs. So a program's entry point leaves with ``os._exit`` once
what the teardown would do that matters is done: the exit handlers run and every file object
still open is flushed (its data would otherwise be lost). A thread still running, or a
generator or coroutine suspended halfway (a ``finally`` still to run), leaves the exit to the
interpreter, as before. The walk of the heap does not see what the entry froze at the start
(``gc.freeze``): the app's load leaves no file open and no generator suspended there (a test
keeps it so).
"""

from __future__ import annotations

import _io
import atexit
import gc
import os
import signal
import sys
import threading
import types

_SUSPENDABLE = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_WATCHED = (*_SUSPENDABLE, _io._IOBase)


def _suspended(obj: object) -> bool:
    if isinstance(obj, types.GeneratorType):
        return obj.gi_suspended
    if isinstance(obj, types.CoroutineType):
        return obj.cr_suspended
    return obj.ag_running or obj.ag_frame is not None  # type: ignore[attr-defined]


def _objects(kinds: tuple[type, ...]) -> list[object]:
    return [obj for obj in gc.get_objects() if issubclass(type(obj), kinds)]


def _closed(stream: _io._IOBase) -> bool:
    try:
        return stream.closed
    except ValueError:  # a text wrapper whose buffer went to another one (stdio's stdout)
        return True


def hold_signals() -> set[int | signal.Signals]:
    """Block INT, TERM and HUP for the rest of the process (its children inherit the mask);
    returns the mask before. Once a command's outcome is decided, a signal could only cut its
    output, its exit handlers or this exit short (a Ctrl-C raised a traceback there): held, it
    dies with the process."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


def leave(code: int) -> None:
    """Exit now with ``code`` when nothing is left for the interpreter's teardown to do;
    return (and let the caller exit normally) otherwise."""
    if threading.active_count() > 1:
        return
    # one walk of the heap finds both kinds: each walk of a command's 20,000 objects took
    # 2-5 ms. The C base of every file object: io.IOBase is an ABC, and its isinstance check
    # cost 4-5 ms over those objects. By type(), not isinstance(): that asks a weak proxy for
    # its __class__, and one whose object is gone (pyroute2 leaves some) raises ReferenceError.
    watched = _objects(_WATCHED)
    for obj in watched:
        if isinstance(obj, _SUSPENDABLE) and _suspended(obj):
            return  # a ``finally`` not run yet: the interpreter's exit, as before
    # held from here: a second Ctrl-C while leaving ended in a traceback instead of this exit
    held = hold_signals()
    try:
        handlers = atexit._ncallbacks()
        atexit._run_exitfuncs()
        if handlers:  # an exit handler may have opened files of its own
            watched = _objects((_io._IOBase,))
        for obj in watched:
            if isinstance(obj, _io._IOBase) and not _closed(obj):
                obj.flush()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        # (a closed pipe, say): the normal exit reports or ignores it as it always did
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return
    os._exit(code)
