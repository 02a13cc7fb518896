"""Who on the host may reach a directory of a container's files (its volumes, its mounts)."""

from __future__ import annotations

import os
from pathlib import Path


def set_host_reach(directory: Path, root_ids: tuple[int, int]) -> None:
    """Give a directory that holds (or mounts) a container's files the mode its kind needs.

    A privileged container's files carry host ids (setuid-root files, device nodes from its
    archive or its own root, who is the host's): no host user may reach them, so 0700. An
    unprivileged container's mapped root must search it (``runtime.traverse``), so 0755."""
    os.chmod(directory, 0o700 if root_ids == (0, 0) else 0o755)
