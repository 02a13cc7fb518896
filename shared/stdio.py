"""The standard streams of a command's own process.

- A standard descriptor that whoever started the command left closed (``pct list >&-``, a
  script's ``<&-``) is opened on /dev/null. The first file the command opened took its number
  otherwise, and a child it ran had no stdout at all (Python's files are not inherited): its
  writes failed, and the child's own first file became its output.
- Output that cannot be written no longer ends the command with a traceback. A full disk or an
  I/O error is :class:`OutputError` (``unable to write the output: No space left on device``,
  exit 1). A reader that went away (``pct list | head -1``) is no failure: the command goes on
  and ends as it would have, its output dropped (it exited 1, or 0, by where the pipe broke).
  Either way the rest of the output goes to /dev/null, so that the flush at the exit cannot
  fail a second time. Messages that cannot be written to stderr are dropped the same way, and
  the command keeps its exit code.
- Names that are not UTF-8 (a file on a storage) go out as the bytes they are, as ``ls``
  writes them into a pipe.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import IO, TextIO

from .atomic import WriteError

_NAMES = ("stdin", "stdout", "stderr")


class OutputError(WriteError):
    """The command's output could not be written (a full disk, an I/O error); an ``OSError``
    too, so that what let a console that failed go on (a backup's task log) still does."""


class _Output(io.TextIOWrapper):
    """stdout: a write that fails is an :class:`OutputError` (a reader gone is none)."""

    fd = 1

    def write(self, text: str) -> int:
        if text == "":  # click's probe of a text stream: unbuffered, it reached the file
            return 0
        try:
            return super().write(text)
        except OSError as err:
            self._failed(err)
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            self._failed(err)

    def _failed(self, err: OSError) -> None:
        # what is still buffered, and any later output, is dropped without a failure
        to_devnull(self.fd)
        if not isinstance(err, BrokenPipeError):
            raise OutputError(f"unable to write the output: {err.strerror or err}", err) from None


class _Errors(_Output):
    """stderr: a message that cannot be written is dropped, and the command keeps its exit code
    (a failure's own message ended it with exit 1 instead of its code)."""

    fd = 2

    def _failed(self, err: OSError) -> None:
        to_devnull(self.fd)


def to_devnull(fd: int) -> None:
    """Point descriptor ``fd`` at /dev/null (for this process and what it starts)."""
    null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)  # inheritable, as a standard descriptor is
        os.close(null)
    else:
        os.set_inheritable(fd, True)


def keep_stdout_for_data() -> IO[bytes]:
    """The command's stdout kept for its data alone (``vzdump --stdout``: the archive), and
    descriptor 1 pointed at stderr, as Proxmox does: whatever else the command or a program it
    starts prints (a container's hookscript in stop mode, a hook) went into the archive stream,
    which then did not decompress."""
    sys.stdout.flush()
    data = os.dup(1)  # not inherited: a program this command starts never holds the stream
    os.dup2(2, 1)
    return open(data, "wb")  # the job owns it until the command ends


def prepare() -> None:
    """Set the streams up as the module text says; once, early in the command's process."""
    for fd, name in enumerate(_NAMES):
        try:
            os.fstat(fd)
        except OSError:
            to_devnull(fd)
            if getattr(sys, name) is None:  # Python found the descriptor closed at its start
                mode = "r" if fd == 0 else "w"
                stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 (for good)
                setattr(sys, name, stream)
    sys.stdout = _wrapped(sys.stdout, _Output, "surrogateescape")
    sys.stderr = _wrapped(sys.stderr, _Errors, None)


def _wrapped(stream: TextIO, kind: type[_Output], errors: str | None) -> TextIO:
    if not isinstance(stream, io.TextIOWrapper) or isinstance(stream, _Output):
        return stream  # a caller's own (a test's capture), or done already
    with contextlib.suppress(OSError):
        stream.flush()
    encoding, line_buffering, write_through = (
        stream.encoding,
        stream.line_buffering,
        stream.write_through,
    )
    return kind(
        stream.detach(),
        encoding=encoding,
        errors=errors or stream.errors,
        line_buffering=line_buffering,
        write_through=write_through,
    )
