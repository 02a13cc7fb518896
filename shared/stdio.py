"""The standard streams of a command's own process.

- A standard descriptor that whoever started the command left closed (``pct list >&-``, a
  script's ``<&-``) is opened on /dev/null. The first file the command opened took its number
  otherwise: a lock or a config became its stdout, and a child's output went into it.
- Output that cannot be written no longer ends the command with a traceback. A full disk or an
  I/O error is :class:`OutputError` (``unable to write the output: No space left on device``,
  exit 1). A reader that went away (``pct list | head -1``) is no failure: the command goes on
  and ends as it would have, its output dropped (it exited 1, or 0, by where the pipe broke).
  Either way the rest of the output goes to /dev/null, so that the flush at the exit cannot
  fail a second time.
- Names that are not UTF-8 (a file on a storage) go out as the bytes they are, as ``ls``
  writes them into a pipe.
"""

from __future__ import annotations

import io
import os
import sys

from .atomic import WriteError

_NAMES = ("stdin", "stdout", "stderr")


class OutputError(WriteError):
    """The command's output could not be written (a full disk, an I/O error); an ``OSError``
    too, so that what let a console that failed go on (a backup's task log) still does."""


class _Output(io.TextIOWrapper):
    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as err:
            _failed(err)
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            _failed(err)


def _failed(err: OSError) -> None:
    _to_devnull(1)  # what is still buffered, and any later output, is dropped without a failure
    if not isinstance(err, BrokenPipeError):
        raise OutputError(f"unable to write the output: {err.strerror or err}", err) from None


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)  # inheritable, as a standard descriptor is
        os.close(null)
    else:
        os.set_inheritable(fd, True)


def prepare() -> None:
    """Set the streams up as the module text says; once, early in the command's process."""
    for fd, name in enumerate(_NAMES):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)
            if getattr(sys, name) is None:  # Python found the descriptor closed at its start
                mode = "r" if fd == 0 else "w"
                stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 (for good)
                setattr(sys, name, stream)
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper) and not isinstance(out, _Output):
        out.flush()
        encoding, line_buffering = out.encoding, out.line_buffering
        wrapped = _Output(
            out.detach(), encoding=encoding, errors="surrogateescape", line_buffering=line_buffering
        )
        sys.stdout = wrapped
