"""The stored indexes under ``var/lib/pve-manager/apl-info``.

Per source ``<name>`` (names never start with a dot, so the hidden files cannot clash):

* ``<name>``         the verified, uncompressed index (what upstream stores too);
* ``.<name>.asc``    its detached signature, so the copy can be re-verified later;
* ``.<name>.state``  JSON: signature time and signer (replay protection), the ETag and
  Last-Modified of the ``.asc`` and the base URL they belong to (conditional GET).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import atomic, paths
from shared.regularfile import UnreadableFile, read_whole

from .aplinfo import parse_aplinfo
from .collection import ApplianceIndex

if TYPE_CHECKING:
    from .sources import Source

Warn = Callable[[str], None]


MAX_STATE = 1 << 20  # a source's state is a few hundred bytes


def index_path(name: str) -> Path:
    return paths.aplinfo_dir() / name


def signature_path(name: str) -> Path:
    return paths.aplinfo_dir() / f".{name}.asc"


def state_path(name: str) -> Path:
    return paths.aplinfo_dir() / f".{name}.state"


def lock_path() -> Path:
    return paths.aplinfo_dir() / ".update.lock"


@dataclass
class SourceState:
    sig_timestamp: int | None = None
    fingerprint: str | None = None
    base_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    updated: int | None = None


def read_state(name: str) -> SourceState:
    """The saved state; an unreadable file counts as none (the index is then re-fetched)."""
    try:
        data = json.loads(read_whole(state_path(name), MAX_STATE).decode("utf-8"))
    except (OSError, UnreadableFile, ValueError):  # a FIFO: never waited on
        return SourceState()
    if not isinstance(data, dict):
        return SourceState()
    known = SourceState.__dataclass_fields__
    return SourceState(**{k: v for k, v in data.items() if k in known})


def write_state(name: str, state: SourceState) -> None:
    atomic.write_bytes(state_path(name), state_bytes(state))


def state_bytes(state: SourceState) -> bytes:
    return (json.dumps(asdict(state), indent=1) + "\n").encode()


def remove_stored(name: str) -> None:
    for path in (index_path(name), signature_path(name), state_path(name)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def load_index(sources: Sequence[Source], *, warn: Warn | None = None) -> ApplianceIndex:
    """Merge the stored index of each enabled source in order, leniently.

    Problems (a missing file, a bad record) become warnings: in ``index.warnings`` and, as
    they happen, through ``warn`` (the CLI prints them on stderr).
    """
    index = ApplianceIndex()

    def note(msg: str) -> None:
        index.warnings.append(msg)
        if warn is not None:
            warn(msg)

    for src in sources:
        if not src.enabled:
            continue
        path = index_path(src.name)
        try:
            raw = read_whole(path, src.transfer.max_index_size)
        except OSError as err:
            note(f"unable to open file '{path}' - {err.strerror}")
            continue
        except UnreadableFile as err:  # a FIFO held every command, /dev/zero took all memory
            note(f"unable to open file '{path}' - {err}")
            continue
        text = raw.decode("utf-8", errors="replace")
        result = parse_aplinfo(
            text, src.url, strict=False, source_name=src.name, mirrors=src.mirrors
        )
        for msg in result.warnings:
            note(msg)
        result.warnings = []
        index.merge(result)
    return index


def stored_summary(name: str) -> dict[str, Any]:
    """What is stored for a source, for ``source list``."""
    path = index_path(name)
    state = read_state(name)
    return {
        "stored": path.exists(),
        "sig_timestamp": state.sig_timestamp,
        "fingerprint": state.fingerprint,
        "base_url": state.base_url,
        "updated": state.updated,
    }
