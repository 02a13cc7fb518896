"""vzdump's logs: the task log on stderr (no timestamps) and the per-guest log file.

The per-guest file ``var/log/vzdump/lxc-<vmid>.log`` carries the same lines with a local
``YYYY-MM-DD HH:MM:SS`` prefix and is copied to ``<dumpdir>/<base>.log`` at the end of the
guest's run (success or failure), as monitoring tools expect (spec vzdump §6).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from shared import paths, safefile, signals
from shared.errors import CtkitError
from shared.printable import printable
from shared.tasklog import TaskLog

from ..report import MAX_LOG_SIZE


class JobLog(TaskLog):
    """The task log of one job; keeps job-level lines for the notification."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.keep_lines = True
        self.in_guest = False  # between open_guest and close_guest
        self.guest_file: IO[str] | None = None  # None also when it could not be made
        self.guest_lines: list[str] = []
        # characters of the kept lines: past the mail's limit (its logs part is then replaced)
        # lines are no longer kept, and a hook printing gigabytes no longer fills the memory
        self.job_kept = self.guest_kept = 0
        # where the archive progress lines go (None: stderr, a bar on a terminal)
        self.progress_stream: IO[str] | None = None

    def checkpoint(self) -> None:
        """Where a guest's backup may be interrupted: a signal that came during held work ends it
        here."""
        signals.raise_if_interrupted()

    def _emit(self, level: str | None, message: str, console: bool = True) -> None:
        before = len(self.lines)
        super()._emit(level, message, console)
        new = self.lines[before:]
        del self.lines[before:]
        for line in new:
            if self.in_guest and self.guest_kept <= MAX_LOG_SIZE:
                self.guest_lines.append(line)
                self.guest_kept += len(line) + 1
            elif not self.in_guest and self.job_kept <= MAX_LOG_SIZE:
                self.lines.append(line)
                self.job_kept += len(line) + 1

    def open_guest(self, vmid: int) -> None:
        self.in_guest = True
        self.guest_lines = []
        self.guest_kept = 0
        self.guest_file = self.attach_or_warn(paths.vzdump_log_dir() / f"lxc-{vmid}.log", "w")

    def task_only(self, message: str) -> None:
        """A line for the task log only (``Backup started at ...``), not the guest file."""
        if not self.console_gone:
            self._print(f"INFO: {printable(message)}")

    def close_guest(self, copy_to: Path | None) -> list[str]:
        """Close the guest file, copy it next to the archive; returns the guest's lines."""
        if not self.in_guest:
            return []
        self.in_guest = False
        fh, self.guest_file = self.guest_file, None
        if fh is not None:
            self.detach(fh)
        if fh is not None and copy_to is not None:
            src = Path(fh.name)
            try:
                safefile.copy_file(src, copy_to)
            except (CtkitError, OSError) as err:
                self.warn(f"unable to copy the log to '{copy_to}': {err}")
        lines, self.guest_lines = self.guest_lines, []
        return lines
