"""Moving btrfs volumes between hosts: ``btrfs send`` of read-only snapshots, ``btrfs receive``.

The sender snapshots a volume (``<volume>@<snap>``, the storage's own snapshot layout) and
streams it, incrementally against an earlier snapshot when one was sent before. The receiver
keeps the streams' subvolumes in a staging directory beside the volume (``.recv-<volume>``,
hidden from the volume listing); at the end the volume is replaced by a writable snapshot of
the last one, and then the staging directory is removed.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import IO

from ..errors import CommandError, StorageError
from .base import Storage
from .btrfsplugin import (
    BtrfsStorage,
    btrfs,
    delete_subvolume,
    is_subvolume,
    rename_exchange,
    snapshot_subvolume,
)

# the snapshots a migration sends: the first pass's, then the final (incremental) one's
SNAP_NAMES = ("ctkit-migrate1", "ctkit-migrate2")


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


def _received(staging: Path) -> dict[str, Path]:
    """``snapshot name -> subvolume`` of what was received (only real subvolumes count)."""
    try:
        entries = list(staging.iterdir())
    except FileNotFoundError:
        return {}  # removed by a rollback meanwhile
    found = {}
    for entry in entries:
        if entry.is_symlink() or not is_subvolume(entry) or "@" not in entry.name:
            raise StorageError(f"unexpected '{entry.name}' in '{staging}'")
        found[entry.name.rsplit("@", 1)[1]] = entry
    return found


def receive(store: Storage, volname: str, snap: str, stream: IO[bytes]) -> None:
    """Receive one send stream of the snapshot ``snap`` into the volume's staging directory.

    Received subvolumes stay there (a read-only subvolume cannot be moved to another
    directory); :func:`adopt` makes the volume from the last one."""
    staging = staging_dir(store, volname)
    if staging.is_symlink():
        raise StorageError(f"'{staging}' is a symlink")
    try:
        staging.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        raise StorageError(f"volume '{store.volid(volname)}' does not exist") from None
    before = _received(staging)
    if snap in before:
        raise StorageError(f"snapshot '{snap}' of volume '{store.volid(volname)}' already exists")
    proc = subprocess.run(
        ["btrfs", "receive", "-q", "-e", "--", str(staging)],
        stdin=stream,
        capture_output=True,
        check=False,
    )
    # (another pass may have arrived meanwhile: a receiver can be opened long before its stream)
    after = _received(staging)
    if proc.returncode != 0 or snap not in after:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else "the stream held something else"
        raise CommandError(f"btrfs receive into '{store.volid(volname)}' failed - {reason}")
    # on disk before the sender may delete its copy; and flushed now, while the container
    # still runs, not by the next pass's snapshot during the downtime
    btrfs("filesystem", "sync", str(staging))


def adopt(store: Storage, volname: str, snap: str) -> None:
    """Replace the (empty, freshly allocated) volume by a writable copy of a received snapshot,
    atomically. The empty volume ends up in the staging directory: :func:`discard_staging`
    removes it with what was received, later (deleting subvolumes is no part of a downtime)."""
    _bstore, subvol = _btrfs_volume(store, volname)
    staging = staging_dir(store, volname)
    source = _received(staging).get(snap)
    if source is None:
        raise StorageError(f"nothing was received for volume '{store.volid(volname)}'")
    tmp = staging / f"{subvol.name}.adopting"
    snapshot_subvolume(source, tmp)
    try:
        rename_exchange(tmp, subvol)
    except OSError as err:
        delete_subvolume(tmp)
        raise StorageError(f"failed to move '{tmp}' into place at '{subvol}' - {err}") from None


def discard_staging(store: Storage, volname: str) -> None:
    """Remove what an interrupted receive left (partial subvolumes included)."""
    staging = staging_dir(store, volname)
    if not staging.is_dir() or staging.is_symlink():
        return
    for entry in staging.iterdir():
        if is_subvolume(entry):
            delete_subvolume(entry)
    with contextlib.suppress(OSError):
        staging.rmdir()
        # the guest's directory, as freeing its last volume does (when the volume went first)
        staging.parent.rmdir()
