"""``pveam update``: refresh the stored index of every enabled source."""

from __future__ import annotations

from shared.errors import DownloadError
from shared.signals import interruptible

from ..output import warn


def update() -> None:
    """Fetch, verify and store the index of every enabled source.

    Prints 'update successful', or names each failed source and why on stderr and fails
    (non-zero exit) with 'update failed - see <log> for details'; a failed source keeps its
    previous index.
    """
    from index import update as index_update
    from index.sources import DEFAULT_SOURCES

    with interruptible():  # TERM/HUP as Ctrl-C: temp files removed, exit 130
        result = index_update.update()
    if not result.ok:
        for src in result.sources:
            if src.status == "failed":
                reason = f"{src.error} ({src.detail})" if src.detail else src.error
                warn(f"source '{src.name}': {reason}")
        failed = {s.name for s in result.sources if s.status == "failed"}
        defaults = sorted(failed & {s.name for s in DEFAULT_SOURCES})
        hint = None
        if defaults:
            hint = (
                "on a host without internet access, remove the default sources "
                f"('pveam source remove {defaults[0]}') or set 'enabled 0' in sources.cfg"
            )
        raise DownloadError(result.message, hint=hint)
    print(result.message)
