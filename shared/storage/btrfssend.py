"""Moving btrfs volumes between hosts: ``btrfs send`` of read-only snapshots, ``btrfs receive``.

The sender snapshots a volume (``<volume>@<snap>``, the storage's own snapshot layout) and
streams it, incrementally against an earlier snapshot when one was sent before. The receiver
takes the stream into a staging directory beside the volume, then renames the received
subvolume to ``<its volume>@<snap>``: from there on it is an ordinary storage snapshot, so
the volume is made from it by a rollback and removed with the volume by ``free_volume``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import IO

from ..errors import CommandError, StorageError
from .base import Storage
from .btrfsplugin import BtrfsStorage, btrfs, is_subvolume


def _btrfs_volume(store: Storage, volname: str) -> tuple[BtrfsStorage, Path]:
    if not isinstance(store, BtrfsStorage):
        raise StorageError(f"storage '{store.id}' is not a btrfs storage")
    vol = store.parse_volname(volname)
    return store, store.subvolume_of(vol)


def send_argv(store: Storage, volname: str, snap: str, parent: str | None = None) -> list[str]:
    """``btrfs send`` of ``<volume>@<snap>`` (incremental against ``@<parent>`` when given)."""
    _bstore, subvol = _btrfs_volume(store, volname)
    source = subvol.with_name(f"{subvol.name}@{snap}")
    argv = ["btrfs", "send", "-q"]
    if parent is not None:
        argv += ["-p", str(subvol.with_name(f"{subvol.name}@{parent}"))]
    return [*argv, "--", str(source)]


def staging_dir(store: Storage, volname: str) -> Path:
    _bstore, subvol = _btrfs_volume(store, volname)
    # a leading dot keeps it out of the storage's volume listing
    return subvol.with_name(f".recv-{subvol.name}")


def receive(store: Storage, volname: str, snap: str, stream: IO[bytes]) -> None:
    """Receive one send stream as the snapshot ``<volume>@<snap>`` of an existing volume."""
    _bstore, subvol = _btrfs_volume(store, volname)
    final = subvol.with_name(f"{subvol.name}@{snap}")
    if final.exists():
        raise StorageError(f"snapshot '{snap}' of volume '{store.volid(volname)}' already exists")
    staging = staging_dir(store, volname)
    discard_staging(store, volname)
    staging.mkdir(mode=0o700)
    proc = subprocess.run(
        ["btrfs", "receive", "-q", "-e", "--", str(staging)],
        stdin=stream,
        capture_output=True,
        check=False,
    )
    received = [p for p in staging.iterdir() if not p.is_symlink() and is_subvolume(p)]
    if proc.returncode != 0 or len(received) != 1 or len(list(staging.iterdir())) != 1:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        discard_staging(store, volname)
        reason = detail[-1] if detail else "unexpected content in the stream"
        raise CommandError(f"btrfs receive into '{store.volid(volname)}' failed - {reason}")
    os.rename(received[0], final)
    staging.rmdir()


def discard_staging(store: Storage, volname: str) -> None:
    """Remove what an interrupted receive left (partial subvolumes included)."""
    staging = staging_dir(store, volname)
    if not staging.is_dir() or staging.is_symlink():
        return
    for entry in staging.iterdir():
        if is_subvolume(entry):
            with contextlib.suppress(StorageError, CommandError):
                btrfs("property", "set", "-ts", str(entry), "ro", "false")
            btrfs("subvolume", "delete", "--", str(entry))
    with contextlib.suppress(OSError):
        staging.rmdir()
