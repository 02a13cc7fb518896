"""Plumbing shared by the tar pipelines: child processes, stderr pumps, writes, failure text.

Every child runs in its own process group so that an aborted pipeline can stop it together
with whatever it started (``lxc-usernsexec`` forks tar). Output lines of the children are
collected by pump threads and handed to the caller's log callback from the calling thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from shared.errors import CommandError
from shared.toolenv import tool_env

CHUNK = 1 << 20  # pipeline chunk size: 1 MiB
PIPE_SIZE = 1 << 20  # pipe buffer we ask the kernel for (the default pipe-max-size)

LogFn = Callable[[str], None]
ProgressFn = Callable[[int], None]


@dataclass
class TransferStats:
    """What one pipeline moved. ``bytes_out`` is None when the size cannot be known (a pipe)."""

    bytes_in: int = 0
    bytes_out: int | None = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None,
    stdout: int | IO[bytes] | None,
    stderr: int | IO[bytes] | None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    umask: int = -1,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        env=tool_env(env),  # tar's --totals line is read: in English whatever the user's locale
        cwd=cwd,
        umask=umask,
    )


def grow_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer so producer and consumer overlap; best effort."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def reap(proc: subprocess.Popen[bytes], timeout: float | None = 30.0) -> int:
    """Wait for a child (killing it after ``timeout``) and return a shell-style exit status."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        rc = proc.wait()
    return rc if rc >= 0 else 128 - rc


class LinePump:
    """A thread that reads lines from a child's pipe into a queue, for the calling thread."""

    def __init__(self, stream: IO[bytes], lines: queue.SimpleQueue[str]) -> None:
        self._stream = stream
        self._lines = lines
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._stream:
            for raw in self._stream:
                line = raw.rstrip(b"\n").decode("utf-8", "replace")
                if line:
                    self._lines.put(line)

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)


def drain(lines: queue.SimpleQueue[str], log: LogFn) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        log(line)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_pieces(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write many buffers with few system calls (``writev`` in batches)."""
    batch: list[bytes | memoryview] = []
    for piece in pieces:
        if piece:
            batch.append(piece)
        if len(batch) == 512:
            _writev_all(fd, batch)
            batch = []
    if batch:
        _writev_all(fd, batch)


def _writev_all(fd: int, batch: list[bytes | memoryview]) -> None:
    total = sum(len(p) for p in batch)
    written = os.writev(fd, batch)
    if written < total:  # interrupted: finish byte-wise
        write_all(fd, b"".join(bytes(p) for p in batch)[written:])


def command_text(stages: Sequence[Sequence[str]], output: str | None = None) -> str:
    """The pipeline as Proxmox logs it: shell-quoted stages joined by ``|``."""
    text = " | ".join(shlex.join(stage) for stage in stages)
    if output is not None:
        text += f" >{shlex.quote(output)}"
    return text


def pipeline_failed(text: str, statuses: Sequence[int], reason: str | None = None) -> None:
    """Raise like bash ``set -o pipefail``: the rightmost non-zero status decides. ``reason``
    is what an in-process stage knows about its failure (``zstd: No space left on device``):
    no stderr carries it, so it goes into the one error line."""
    failed = [s for s in statuses if s != 0]
    if failed:
        message = f"command '{text}' failed: exit code {failed[-1]}"
        raise CommandError(f"{message} - {reason}" if reason else message)
