"""Running a user's script (a vzdump ``--script`` hook, a container's hookscript) as Proxmox
runs it.

Proxmox starts hook scripts through Perl's ``exec``, which, like ``execvp``, hands a file the
kernel cannot execute (no ``#!`` line: ``ENOEXEC``) to ``/bin/sh``. Python's ``execve`` does
not: such a script, which worked on Proxmox, failed here (and, for a container's hookscript,
with a traceback that kept a running container from being stopped). Its failures read as
Proxmox's: ``command '<argv>' failed: exit code N`` or ``got signal N``.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Sequence
from typing import Any


def popen(argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kw)``, with ``/bin/sh`` for a script without ``#!``."""
    try:
        return subprocess.Popen(list(argv), **kw)
    except OSError as err:
        if err.errno != errno.ENOEXEC:
            raise
    return subprocess.Popen(["/bin/sh", *argv], **kw)


def failure(argv: Sequence[str], returncode: int) -> str:
    """Proxmox's words for a script that failed: ``command '...' failed: exit code N``."""
    if returncode < 0:
        return f"command '{' '.join(argv)}' failed: got signal {-returncode}"
    return f"command '{' '.join(argv)}' failed: exit code {returncode}"


def not_started(argv: Sequence[str], err: OSError) -> str:
    """A script that could not be started (gone, a bad ``#!`` line such as one ending in a
    carriage return)."""
    return f"command '{' '.join(argv)}' failed: {err.strerror or err}"
