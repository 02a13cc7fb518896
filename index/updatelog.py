"""``/var/log/pveam.log``: rotated to ``.0`` above 256 KiB, one timestamped line per line."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO

from shared import paths
from shared.tasklog import timestamp

ROTATE_SIZE = 256 * 1024


class UpdateLog:
    def __init__(self, path: Path | None = None, rotate_size: int = ROTATE_SIZE) -> None:
        self.path = path or paths.pveam_log()
        self.rotate_size = rotate_size
        self.fh: IO[str] | None = None
        self.warnings: list[str] = []

    def open(self) -> UpdateLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.stat().st_size > self.rotate_size:
                os.replace(self.path, self.path.with_name(self.path.name + ".0"))
        except FileNotFoundError:
            pass
        except OSError as err:  # upstream only warns when the rename fails
            self.warnings.append(f"unable to rotate '{self.path}': {err.strerror}")
        self.fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return self

    def write(self, message: str) -> None:
        """Log ``message``; a multi-line message gives several prefixed lines."""
        if self.fh is None:
            self.open()
        assert self.fh is not None
        stamp = timestamp()
        for line in message.rstrip("\n").split("\n"):
            self.fh.write(f"{stamp} {line}\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def __enter__(self) -> UpdateLog:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
