"""Filling the restored root: extraction, and the tidying of what tar left (pct.md §4.2.5).

The new volumes are mounted at ``<lxcpath>/<vmid>/rootfs`` and the archive is extracted into
them by the guarded extractor (``shared.archive.tarextract``), under the new config's id map,
without what ``vzdumpformat.DataTreeFilter`` leaves out (the leading config members). The
directories that exist before extraction (the root, the volume mount points and the
directories on the way to a mount point) are skipped by tar's ``--skip-old-files``; their
archive entries are picked as they stream past and applied afterwards (:func:`premade_dirs`).
Copies of the config members in the data tree are deleted (chrooted, so links in the archive
cannot redirect it); the distro's template fixups run.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from shared import preload
from shared.archive.pipeline import ProgressFn
from shared.archive.tarextract import apply_directory_entries, extract
from shared.archive.tarformat import Member, display_name
from shared.archive.targuard import split_name
from shared.archive.vzdumpformat import CONFIG_PATHS, DataTreeFilter
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint
from shared.errors import CommandError, StorageError
from shared.guest.chroot import run_in_root
from shared.runtime.beneath import open_beneath
from shared.runtime.guestview import config_idmap
from shared.tasklog import Progress

from .provision import GUEST_MODULES, detect_guest
from .restore_plan import RestoreRequest
from .restore_source import ArchiveSource

Log = Callable[[str], None]


def _remove_config_members() -> None:
    """(Runs chrooted.) Delete copies of pct.conf/pct.fw that the data tree brought along.

    A container may have had its own, and the suspend-mode archives of earlier versions hold
    them twice; Proxmox deletes them after a restore.
    """
    for path in CONFIG_PATHS:
        with contextlib.suppress(OSError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)


def remove_config_members(rootdir: Path) -> None:
    """Delete ``/etc/vzdump/pct.{conf,fw}`` in a restored root (chrooted: links stay inside)."""
    run_in_root(rootdir, _remove_config_members)


Parts = tuple[bytes, ...]


def _mp_parts(mp: MountPoint) -> Parts | None:
    return () if mp.key == "rootfs" else split_name(os.fsencode(mp.path.lstrip("/")))


def premade_dirs(conf: Config) -> set[Parts]:
    """The container's directories that exist before extraction, as split member names.

    Mounting the new layout makes the root, every mount point and every directory on the way
    to one; tar's ``--skip-old-files`` then skips their archive entries. All of them belong
    to the container, except a bind or device mount point and what lies inside it (a host
    directory keeps its attributes); the root is the container's whatever it is mounted from.
    """
    mounts = {parts: mp for mp in conf.mountpoints() if (parts := _mp_parts(mp)) is not None}
    candidates = {parts[:depth] for parts in mounts for depth in range(len(parts) + 1)}
    found: set[Parts] = set()
    for dir_parts in candidates:
        inner = max((m for m in mounts if dir_parts[: len(m)] == m), key=len, default=None)
        if inner is not None and (inner == () or mounts[inner].type == "volume"):
            found.add(dir_parts)
    return found


class PremadeEntries:
    """``keep`` for the extraction: the first directory entry of each of ``wanted``."""

    def __init__(self, wanted: set[Parts]) -> None:
        self._wanted = set(wanted)

    def __call__(self, member: Member) -> bool:
        if not self._wanted or not member.is_dir():
            return False
        parts = split_name(member.name)
        if parts not in self._wanted:
            return False
        self._wanted.discard(parts)  # as for any directory: the first entry wins
        return True


def apply_premade_entries(rootdir: Path, kept: list[Member], conf: Config, log: Log) -> None:
    """Give the premade directories the mode, owner, times, ACLs and xattrs of their entries.

    Each directory is checked to be a real one, reached without a symlink; the entries are
    applied under the names we computed (:func:`~shared.archive.tarextract.directory_entry`).
    """
    entries: list[tuple[Parts, Member]] = []
    for member in kept:
        parts = split_name(member.name)
        assert parts is not None  # the guard refused anything else
        try:
            os.close(open_beneath(rootdir, os.fsdecode(b"/".join(parts))))
        except (OSError, StorageError) as err:
            shown = display_name(b"/" + b"/".join(parts))
            log(f"WARN: not restoring the attributes of '{shown}' - {err}")
            continue
        entries.append((parts, member))
    try:
        apply_directory_entries(rootdir, entries, config_idmap(conf) or None)
    except CommandError as err:
        log(f"WARN: unable to restore the attributes of the root or mount point directories: {err}")


def template_fixup(conf: Config, rootdir: Path, log: Log) -> None:
    """OS detection (stores the detected ostype) and the distro's template fixups only."""
    setup = detect_guest(conf, rootdir, log)
    setup.template_fixup()


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
    with Progress("restoring", total) as bar:
        seen = 0

        def update(count: int) -> None:
            nonlocal seen
            bar.update(count - seen)
            seen = count

        yield update


def extract_archive(
    source: ArchiveSource, target: Path, conf: Config, req: RestoreRequest, log: Log
) -> list[Member]:
    """Extract into the mounted root; returns the entries of the premade directories."""
    if source.is_stdin:
        log("extracting archive from STDIN")
    else:
        log(f"restoring '{source.label}' now..")
        log(f"extracting archive '{source.path or source.label}'")
    # the template fixup after it imports the guest modules: they load meanwhile
    with _progress(req.progress, source.size()) as progress, preload.loading(*GUEST_MODULES):
        stats = extract(
            source.reader(),
            target,
            compression=source.compression,
            idmap=config_idmap(conf) or None,
            ignore_unpack_errors=req.ignore_unpack_errors,
            bwlimit_kib=req.bwlimit,
            progress=progress,
            log=log,
            keep=PremadeEntries(premade_dirs(conf)),
            skip=DataTreeFilter(log),
        )
    return stats.kept
