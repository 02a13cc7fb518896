"""Children that end with the ctkit process that started them.

A child that streams on its own (a compressor fed by tar, an rsync to another host) would go on
for as long as its data lasts after a ``kill -9`` of its parent, holding files, mounts and
bandwidth the next command's recovery wants back. ``setpriv --pdeathsig`` makes the kernel kill
it when the thread that started it ends; a forked child (no program of its own) asks for the
same with prctl (:func:`die_with`).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Sequence

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
