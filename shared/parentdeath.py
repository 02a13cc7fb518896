"""Children that end with the ctkit process that started them.

A child that streams on its own (a compressor fed by tar, an rsync to another host) would go on
for as long as its data lasts after a ``kill -9`` of its parent, holding files, mounts and
bandwidth the next command's recovery wants back. ``setpriv --pdeathsig`` makes the kernel kill
it when the thread that started it ends; a forked child (no program of its own) asks for the
same with prctl (:func:`die_with`). A program that passes the signal on to children of its own
may fail to (:func:`guarding_group`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence

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


@contextlib.contextmanager
def guarding_group(pgid: int, grace: float) -> Iterator[None]:
    """While inside: should this process die, even by a ``kill -9``, a guard forked now TERMs
    process group ``pgid`` and KILLs what is left of it after ``grace`` seconds.

    util-linux ``fsck`` passes a TERM on to its checker only when the signal interrupts its
    wait: one that came between starting the checker and waiting for it was kept and never
    passed on, and the checker wrote the image for seconds after the command had been killed.
    The whole group, TERMed at once, has no such gap."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the guard
        try:
            _guard(parent, pgid, grace)
        finally:
            os._exit(0)
    try:
        yield
    finally:  # the guarded work is over (or is being stopped by this process): no longer needed
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _guard(parent: int, pgid: int, grace: float) -> None:  # pragma: no cover - a forked child
    """Wait for the parent's death (its parent-death TERM), then end group ``pgid``."""
    from . import syscalls

    # the terminal's Ctrl-C is the parent's to act on; the guard holds none of its files, so a
    # caller waiting for the parent's output to end does not wait for the guard
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    syscalls.libc().prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == parent:  # else it is already gone
        signal.sigwait({signal.SIGTERM})
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            time.sleep(0.05)
            os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGKILL)
