"""Children that end with the ctkit process that started them.

A child that streams on its own (a compressor fed by tar, an rsync to another host) would go on
for as long as its data lasts after a ``kill -9`` of its parent, holding files, mounts and
bandwidth the next command's recovery wants back. ``setpriv --pdeathsig`` makes the kernel kill
it when the thread that started it ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence


def tied_to_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it receives SIGKILL when its parent dies (as is without setpriv)."""
    if shutil.which("setpriv") is None:
        return list(argv)
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]
