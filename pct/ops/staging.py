"""The directory a new container's volumes are mounted at while they are filled.

``<lxcpath>/<vmid>/rootfs`` is a known name: if something planted a symlink there (or at
``<lxcpath>/<vmid>``), mounting the new volumes by path would follow it and cover a host
directory, and the extraction would then write into whatever the volume now hides. The
directories are therefore made, or checked, one component at a time without following
symlinks; anything but a real directory under those names refuses the operation.
"""

from __future__ import annotations

from pathlib import Path

from shared import paths
from shared.errors import StorageError
from shared.runtime.beneath import ensure_dir


def prepare_staging_dir(vmid: int) -> Path:
    """``<lxcpath>/<vmid>/rootfs`` as real directories (made root-owned when missing)."""
    base = paths.lxc_path()
    base.mkdir(parents=True, exist_ok=True)  # the lxcpath itself is the host's own choice
    try:
        return ensure_dir(base, f"{vmid}/rootfs", 0, 0)
    except (StorageError, OSError):
        shown = paths.lxc_rootfs(vmid)
        raise StorageError(
            f"refusing to mount the volumes of CT {vmid} at '{shown}' - "
            "a symlink or a file is in the way"
        ) from None
