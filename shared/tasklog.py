"""Task logs: ``INFO:``/``WARN:``/``ERROR:`` lines, per-operation log files, progress display.

The console gets bare lines (Proxmox's task log has no timestamps); a log file, when attached,
gets the same lines prefixed with the local time ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .printable import printable


def timestamp(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


class TaskLog:
    """Write task lines to a console stream and, optionally, to timestamped log files."""

    def __init__(self, stream: IO[str] | None = None, *, prefix_levels: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.prefix_levels = prefix_levels
        self.files: list[IO[str]] = []
        self.failed: list[IO[str]] = []  # log files a write failed on: not written again
        self.warnings = 0
        self.errors = 0
        self.lines: list[str] = []
        self.keep_lines = False
        self.console_gone = False

    def attach(self, path: Path, mode: str = "w") -> IO[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name that is not UTF-8 (a file found on a storage) is logged as \udcXX escapes:
        # the log stays UTF-8 and the backup goes on
        fh = open(path, mode, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self.files.append(fh)
        return fh

    def attach_or_warn(self, path: Path, mode: str = "w") -> IO[str] | None:
        """:meth:`attach`, or None with a warning: a log that cannot be made (its disk full or
        read-only) does not stop the task."""
        try:
            return self.attach(path, mode)
        except OSError as err:
            self.warn(f"unable to create log file '{path}' - {err.strerror or err}")
            return None

    def detach(self, fh: IO[str]) -> None:
        for group in (self.files, self.failed):
            if fh in group:
                group.remove(fh)
        # the lines a full disk kept in the buffer are lost: said when the write failed
        with contextlib.suppress(OSError):
            fh.close()

    def close(self) -> None:
        for fh in [*self.files, *self.failed]:
            self.detach(fh)

    def _emit(self, level: str | None, message: str, console: bool = True) -> None:
        for line in str(message).split("\n"):
            # one line of the log each: a carriage return (or another break, or an escape
            # sequence) in a path or an error message forged or hid log lines
            line = printable(line)
            text = f"{level}: {line}" if level and self.prefix_levels else line
            if console and not self.console_gone:
                self._print(text)
            stamp = timestamp()
            failed = []
            for fh in self.files:
                try:
                    fh.write(f"{stamp} {text}\n")
                    fh.flush()
                except OSError as err:
                    failed.append((fh, err))
            if self.keep_lines:
                self.lines.append(text)
            for fh, reason in failed:
                self._file_failed(fh, reason)

    def _file_failed(self, fh: IO[str], err: OSError) -> None:
        """A log file that cannot be written (its disk full, gone read-only) ends no task, as
        Proxmox's log writes end none: it is said once, on the console and the other files."""
        self.files.remove(fh)
        self.failed.append(fh)
        self.warn(f"unable to write log file '{fh.name}' - {err.strerror or err}")

    def _print(self, text: str) -> None:
        """Console output; a closed console (``vzdump ... | head``) must not end the task:
        its lines still go to the log files. A progress bar on the same terminal is cleared
        for the line and drawn again below it."""
        try:
            console_line(text, self.stream)
        except (BrokenPipeError, ValueError, OSError):
            self.console_gone = True

    def info(self, message: str) -> None:
        self._emit("INFO", message)

    def warn(self, message: str) -> None:
        self.warnings += 1
        self._emit("WARN", message)

    def error(self, message: str) -> None:
        self.errors += 1
        self._emit("ERROR", message)

    def plain(self, message: str) -> None:
        self._emit(None, message)

    def record(self, message: str) -> None:
        """A line for the log files only: what the console has already been told (how a task
        ended), for a log read later on its own."""
        self._emit(None, message, console=False)


def console_line(text: str, stream: IO[str] | None = None) -> None:
    """Print one line to ``stream`` (default stdout); when a progress bar is drawn on the same
    terminal (also through another descriptor: stdout and stderr on one tty), above the bar."""
    stream = stream if stream is not None else sys.stdout
    bar = Progress.active
    if bar is not None and bar.shares_stream(stream):
        bar.print_above(text)
    else:
        print(text, file=stream, flush=True)


def _same_file(one: IO[str], other: IO[str]) -> bool:
    try:
        a, b = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def human_bytes(n: float) -> str:
    """``1.1GiB`` style, as tar's --totals and Proxmox's progress lines print sizes."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(n)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


class Progress:
    """Bytes, rate and ETA: a rich bar on a terminal, a plain line every few seconds otherwise.

    While a bar is shown it is :attr:`active`: task-log lines for the same terminal go through
    :meth:`print_above`, so no line is ever written onto the bar. ``total`` may be an estimate;
    a count that passes it raises it (the bar never shows more than 100 %).
    """

    active: Progress | None = None

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: IO[str] | None = None,
        interval: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
                # the bar goes where the check above looked, not to rich's default (stdout,
                # which may carry data: vzdump --stdout, pct restore from stdin)
                console=Console(file=self.stream),
            )
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total)
            Progress.active = self
        return self

    def shares_stream(self, stream: IO[str]) -> bool:
        """Whether ``stream`` writes where the bar is drawn (the same file or terminal)."""
        if self._rich is None:
            return False
        if stream is self.stream:
            return True
        if not _same_file(stream, self.stream):
            return False
        stream.flush()  # what was printed before goes first
        return True

    def print_above(self, text: str) -> None:
        """One plain line above the bar (rich clears the bar, prints, draws it again)."""
        self._rich.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def set_total(self, total: int) -> None:
        """The total, once it is known (work that starts before its size is counted)."""
        self.total = max(total, self.done)
        if self._rich is not None:
            self._rich.update(self._task, total=self.total)

    def update(self, nbytes: int) -> None:
        """Record ``nbytes`` more bytes done."""
        self.done += nbytes
        if self.total is not None and self.done > self.total:
            self.total = self.done  # the estimate was low
            if self._rich is not None:
                self._rich.update(self._task, total=self.total)
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            print(self.status_line(now), file=self.stream, flush=True)

    def status_line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        rate = self.done / elapsed
        text = f"{self.label}: {human_bytes(self.done)}"
        if self.total:
            pct = 100.0 * self.done / self.total
            text += f" of {human_bytes(self.total)} ({pct:.0f}%)"
        text += f", {human_bytes(rate)}/s"
        if self.total and rate > 0:
            eta = max(self.total - self.done, 0) / rate
            text += f", ETA {int(eta) // 60:02d}:{int(eta) % 60:02d}"
        return text

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            if Progress.active is self:
                Progress.active = None
            self._rich.stop()


@contextmanager
def progress(label: str, total: int | None = None, **kw: Any) -> Iterator[Progress]:
    with Progress(label, total, **kw) as prog:
        yield prog
