"""The ``--script`` hook: ``<script> <phase> [<mode> <vmid>]`` with vzdump's environment.

Output lines are logged as INFO, control characters escaped; a non-zero exit raises (the
caller decides whether that fails the guest, the job, or is only a warning — spec vzdump §4.6).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping

from shared import signals
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
            proc = subprocess.Popen(
                argv,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,  # so that an interrupt can end it with what it started
            )
        except OSError as err:  # gone, not executable, a bad interpreter line
            raise CommandError(f"command '{' '.join(argv)}' failed: {err.strerror}") from None
        with proc:
            # a signal ends a hook outside cleanup in a parallel job's worker as well
            output, _none = signals.communicate(proc)
        for line in output.splitlines():
            self.log(printable(line))  # into a terminal, a log file and a mail: no escapes, NULs
        if proc.returncode != 0:
            text = " ".join(argv)
            raise CommandError(f"command '{text}' failed: exit code {proc.returncode}")
