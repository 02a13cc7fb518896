"""Modules a command will need later, loaded in a thread while it waits on something else.

``pct create`` and ``pct restore`` need the guest-setup package only once the archive is
extracted, and the extraction's main thread spends most of its time blocked on tar's pipe;
``pct clone --full`` needs it once cp is done. The package's import (about 10 ms) runs in that
time instead of before it. The command's own import of the same module waits for this one
(Python's per-module import lock) and raises its error, if any, where it is needed. ctkit forks
no Python code while a command extracts or copies (tar, the compressors and cp are started as
programs), so no child inherits a held lock.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def loading(*names: str) -> Iterator[None]:
    """Import ``names`` in a thread while the block runs; the thread is over when it ends."""
    thread = threading.Thread(target=_load, args=(names,), name="preload", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _load(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the command's own import reports it, if it comes to that
            return
