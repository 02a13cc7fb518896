"""``pveam update``: refresh the stored index of every enabled source."""

from __future__ import annotations

from index import update as index_update
from shared.errors import DownloadError


def update() -> None:
    """Fetch, verify and store the index of every enabled source.

    Prints 'update successful', or fails (non-zero exit) with 'update failed - see <log> for
    details'; a failed source keeps its previous index.
    """
    result = index_update.update()
    if not result.ok:
        raise DownloadError(result.message)
    print(result.message)
