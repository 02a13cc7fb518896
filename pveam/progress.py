"""The downloader's ``(done, total)`` callback drawn with :class:`shared.tasklog.Progress`.

The bar is opened at the first callback, when the total is known; if a transfer starts over
(a restarted download, the next mirror) a fresh bar replaces the old one.
"""

from __future__ import annotations

import sys
from typing import IO

from shared.tasklog import Progress


class DownloadProgress:
    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stdout
        self._bar: Progress | None = None
        self._seen = 0

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is None or done < self._seen:
            self.close()
            self._bar = Progress(self.label, total, stream=self.stream).__enter__()
            self._seen = 0
        self._bar.update(done - self._seen)
        self._seen = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> DownloadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
