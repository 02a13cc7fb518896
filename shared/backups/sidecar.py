"""The verification sidecar ``<archive>.verify``: the last result of each kind of check.

It sits beside the archive like ``.notes`` and ``.protected`` and holds one JSON object keyed by
kind (``verify``, ``restore-test``), each ``{"state": "ok"|"failed", "time": <epoch>,
"checked": {...}, "error": "<one line>"}``. A sidecar that is a symlink, too large or not JSON
reads as "never verified": it is only a record, never trusted to decide anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import atomic
from shared.formats.archivename import VERIFY_EXT
from shared.regularfile import read_regular

MAX_SIDECAR = 64 << 10
FUTURE_SLACK = 3600  # seconds a record's time may lie ahead (another host's clock)
KINDS = ("verify", "restore-test")


@dataclass(frozen=True)
class Verification:
    kind: str
    state: str  # ok | failed
    time: int
    checked: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "time": self.time, "checked": self.checked}
        if self.error is not None:
            out["error"] = self.error
        return out


def sidecar_path(archive: Path) -> Path:
    return Path(f"{archive}{VERIFY_EXT}")


def _load(archive: Path) -> dict[str, Any]:
    try:  # never through a symlink, never waiting on a FIFO put there
        found = read_regular(sidecar_path(archive), MAX_SIDECAR, follow_symlinks=False)
    except OSError:
        return {}
    if found is None or len(found[0]) > MAX_SIDECAR:
        return {}
    data = found[0]
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse(kind: str, raw: Any) -> Verification | None:
    if not isinstance(raw, dict):
        return None
    state, when = raw.get("state"), raw.get("time")
    # a time ahead of now would rank as the newest record (hiding a later failure) and keep the
    # backup "recently verified" for ever; one out of range broke every listing
    if state not in ("ok", "failed") or type(when) is not int:
        return None
    if not 0 <= when <= time.time() + FUTURE_SLACK:
        return None
    checked = raw.get("checked")
    error = raw.get("error")
    return Verification(
        kind,
        state,
        when,
        checked if isinstance(checked, dict) else {},
        error if isinstance(error, str) else None,
    )


def read_all(archive: Path) -> list[Verification]:
    """Every recorded kind, oldest first."""
    data = _load(archive)
    found = [v for v in (_parse(k, data.get(k)) for k in KINDS) if v is not None]
    return sorted(found, key=lambda v: v.time)


def last(archive: Path) -> Verification | None:
    """The most recent verification of any kind."""
    found = read_all(archive)
    return found[-1] if found else None


def record(archive: Path, result: Verification) -> None:
    """Store ``result`` as the latest of its kind (atomically; other kinds are kept)."""
    data = {k: v for k, v in _load(archive).items() if k in KINDS}
    data[result.kind] = result.as_dict()
    atomic.write_text(sidecar_path(archive), json.dumps(data, sort_keys=True) + "\n")


def now() -> int:
    return int(time.time())
