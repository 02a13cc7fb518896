"""The ``--script`` hook: ``<script> <phase> [<mode> <vmid>]`` with vzdump's environment.

Output lines are logged as INFO, control characters escaped; a non-zero exit raises (the
caller decides whether that fails the guest, the job, or is only a warning — spec vzdump §4.6).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping

from shared import signals, userscript
from shared.errors import CommandError, ConfigError
from shared.printable import printable


def check_script(path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"Error: The hook script '{path}' does not exist.")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"Error: The hook script '{path}' is not executable.")


class Hooks:
    def __init__(self, script: str | None, log: Callable[[str], None]) -> None:
        self.script = script
        self.log = log
        self.env: dict[str, str] = {}

    def run(
        self,
        phase: str,
        mode: str | None = None,
        vmid: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not self.script:
            return
        argv = [self.script, phase]
        if vmid is not None:
            argv += [mode or "stop", str(vmid)]
        full_env = {**os.environ, **self.env, **(env or {})}
        try:
            proc = userscript.popen(
                argv,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so that an interrupt can end it with what it started
            )
        except OSError as err:  # gone, not executable, a bad interpreter line
            raise CommandError(userscript.not_started(argv, err)) from None
        output = _Output(self.log)
        with proc:
            # a signal noted while the caller was held ends a hook outside cleanup as well
            try:
                signals.stream_lines(proc, output.line)
            except signals.CutShort:
                output.close()
                raise CommandError(
                    f"command '{' '.join(argv)}' failed: ended by a second signal"
                ) from None
            proc.wait()
        output.close()
        if proc.returncode != 0:
            raise CommandError(userscript.failure(argv, proc.returncode))


MAX_LINES = 100_000  # of one hook run, logged (and kept for the mail); the rest is counted


class _Output:
    """A hook's output lines into the log as they come: a terminal, a log file and a mail, so
    escaped (no escape sequences, no NULs). Past :data:`MAX_LINES` they are only counted: the
    task keeps its lines for the mail, and a hook printing gigabytes filled the memory."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.count = 0

    def line(self, data: bytes) -> None:
        self.count += 1
        if self.count <= MAX_LINES:
            self.log(printable(data.decode("utf-8", "replace").rstrip("\r")))

    def close(self) -> None:
        if self.count > MAX_LINES:
            self.log(f"({self.count - MAX_LINES} more lines of hook output not logged)")
