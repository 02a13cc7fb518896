"""Children that end with the ctkit process that started them.

A child that streams on its own (a compressor fed by tar, an rsync to another host) would go on
for as long as its data lasts after a ``kill -9`` of its parent, holding files, mounts and
bandwidth the next command's recovery wants back. ``setpriv --pdeathsig`` makes the kernel kill
it when the thread that started it ends; a forked child (no program of its own) asks for the
same with prctl (:func:`die_with`). A program that passes the signal on to children of its own
may fail to (:func:`guarding_group`). A guard can also clean up what a killed command leaves
(:func:`guarding`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence

PR_SET_PDEATHSIG = 1


def die_with(parent: int, sig: signal.Signals = signal.SIGKILL) -> None:  # pragma: no cover
    """In a child forked (not exec'd) from ``parent``: get ``sig`` (killed, by default) when
    the thread that forked it ends, as :func:`tied_to_parent` does for a program; end now if it
    has already. A child that cleans up after itself asks for SIGTERM and acts on it."""
    from . import syscalls

    syscalls.libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def tied_to_parent(argv: Sequence[str], sig: str = "KILL") -> list[str]:
    """``argv`` run so that it receives SIGKILL (or ``sig``) when its parent dies (as is
    without setpriv). TERM suits a program that stops cleanly on it and passes it on to its
    own children (util-linux ``fsck`` to the checker it runs)."""
    if shutil.which("setpriv") is None:
        return list(argv)
    return ["setpriv", "--pdeathsig", sig, "--", *argv]


_QUIET = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
PARENT_POLL = 1.0  # seconds between the guard's looks at its parent, beside the death signal
# seconds between the TERMs of a stopping group: e2fsck notes a TERM that comes before its MMP
# wait (a sleep of about 11 s) and sleeps on; one that comes during the sleep ends it
TERM_AGAIN = 1.0


@contextlib.contextmanager
def guarding(action: Callable[[], None]) -> Iterator[None]:
    """While inside: should this process die, even by a ``kill -9`` (of it alone or of its
    whole process group), a guard forked now runs ``action``. The guard holds none of this
    process's files (a lock held here is free once this process is gone) and writes nowhere:
    ``action`` opens what it needs and says nothing. The programs it runs inherit the guard's
    signals (TERM blocked; INT, HUP and QUIT ignored), so that a cleanup runs to its end."""
    parent = os.getpid()
    # no signal acts between the fork and the guard's own handling of them: the parent's
    # Python handlers would run in the guard (a Ctrl-C there ended it, or ran the parent's
    # cleanup in it); the parent gets what came meanwhile when the mask is restored
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _QUIET)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the guard
            try:
                _guard(parent, action)
            finally:
                os._exit(0)
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        yield
    finally:  # the guarded work is over (or is being stopped by this process): no longer needed
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def guarding_group(pgid: int, grace: float) -> contextlib.AbstractContextManager[None]:
    """While inside: should this process die, its guard (:func:`guarding`) TERMs process group
    ``pgid`` (again every :data:`TERM_AGAIN` seconds) and KILLs what is left of it after
    ``grace`` seconds.

    util-linux ``fsck`` passes a TERM on to its checker only when the signal interrupts its
    wait: one that came between starting the checker and waiting for it was kept and never
    passed on, and the checker wrote the image for seconds after the command had been killed.
    The whole group, TERMed at once, has no such gap."""
    return guarding(functools.partial(_end_group, pgid, grace))


def _guard(parent: int, action: Callable[[], None]) -> None:  # pragma: no cover - forked
    """Wait for the parent's death, then run ``action``."""
    from . import syscalls

    # a group of its own: a kill of the parent's whole group (a shell's kill %1, timeout -s
    # KILL) leaves the guard to act; a Ctrl-C is the parent's to act on, and the guard holds
    # none of its files, so a caller waiting for the parent's output does not wait for it
    os.setpgid(0, 0)
    for sig in _QUIET - {signal.SIGTERM}:
        signal.signal(sig, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    syscalls.libc().prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    # the death signal wakes it at once; a TERM from anyone else is no death, and a failed
    # prctl is made up for by the look every second
    while os.getppid() == parent:
        signal.sigtimedwait({signal.SIGTERM}, PARENT_POLL)
    with contextlib.suppress(Exception):  # nobody is left to tell
        action()


def _end_group(pgid: int, grace: float) -> None:  # pragma: no cover - runs in a guard
    with contextlib.suppress(ProcessLookupError):
        deadline, again = time.monotonic() + grace, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= again:
                os.killpg(pgid, signal.SIGTERM)
                again = time.monotonic() + TERM_AGAIN
            time.sleep(0.05)
            os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGKILL)
