"""Extract chosen files or directories of a backup into a directory, nothing else.

Every member still goes past the extraction guard (``shared.archive.targuard``), so the
symlink-then-write-through tricks a hostile archive could play are refused exactly as in a full
restore; only the chosen members reach GNU tar, which runs with restore's flags (owners,
modes, ACLs, xattrs, sparse files, ``--skip-old-files``: an existing file is never replaced)
and, for a container target, under the container's id map. When every choice is a single
non-directory member, reading stops as soon as the last one is out; a directory is read to the
end of the archive, since a mount point's content may follow later in the stream.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.archive.idmap import IdMapEntry
from shared.archive.pipeline import LogFn
from shared.archive.tarextract import ExtractStats, extract
from shared.archive.tarformat import LNK, Member, display_name
from shared.archive.tarscan import ScanSink
from shared.errors import ArchiveError, CommandError, NotFoundError, StorageError
from shared.safefile import remove_tree

from .browse import member_parts, path_parts
from .locate import Backup

Parts = tuple[bytes, ...]


MEMBERS_KEPT = 1000


@dataclass
class Extracted:
    count: int = 0  # members extracted
    members: list[str] = field(default_factory=list)  # the first MEMBERS_KEPT of them, by path
    archive_bytes: int = 0  # compressed bytes read
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)


class _Select(ScanSink):
    """Takes the members at or below the choices (of those the guard approved)."""

    def __init__(self, choices: Sequence[Parts]) -> None:
        # a set, looked up by each prefix of a member's name: scanning the list for each member
        # took members x choices (200,000 members and 4,000 paths: 70 s)
        self.choices = set(choices)
        self.seen: set[Parts] = set()
        self.whole: set[Parts] = set()  # choices that are directories: read to the end
        self.finished: set[Parts] = set()  # single-member choices whose data is out
        # a count and the first names only: a directory of 300,000 files kept every header
        # in memory (300 MB)
        self.count = 0
        self.names: list[str] = []
        self._current: Parts | None = None

    def member(self, member: Member) -> bool:
        parts = member_parts(member.name)
        hits = self._chosen_above(parts)
        if not hits:
            return False
        if member.type == LNK:
            target = member_parts(member.linkname)
            if not self._chosen_above(target):
                raise ArchiveError(
                    f"'{member.display}' is a hard link to '/{display_name(b'/'.join(target))}',"
                    " which is not being extracted: extract that path too"
                )
        for choice in hits:
            self.seen.add(choice)
            if parts != choice or member.is_dir():
                self.whole.add(choice)
        self._current = parts if parts in self.choices and not member.is_dir() else None
        self.count += 1
        if len(self.names) < MEMBERS_KEPT:
            self.names.append("/" + display_name(b"/".join(parts)))
        return True

    def member_end(self, member: Member) -> None:
        if self._current is not None:
            self.finished.add(self._current)
            self._current = None

    def _chosen_above(self, parts: Parts) -> list[Parts]:
        """The choices ``parts`` is at or below."""
        return [parts[:i] for i in range(len(parts) + 1) if parts[:i] in self.choices]

    @property
    def done(self) -> bool:
        return not self.whole and len(self.finished) == len(self.choices)


def prepare_target(target: Path) -> Path:
    """An existing real directory (created when missing); never a symlink."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        target.mkdir(parents=True, mode=0o700)
        st = os.lstat(target)
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError(f"target '{target}' is not a directory")
    return target.resolve()


def extract_to_dir(backup: Backup, paths: Sequence[str], target: Path) -> Extracted:
    """:func:`extract_paths` into a host directory. A new target is filled under a temporary
    name beside it and renamed when complete, so a failure (a cut or hostile archive) leaves
    nothing; into an existing one, what was extracted before the failure stays."""
    if os.path.lexists(target):
        real = prepare_target(target)
        _check_no_symlinks(real, [path_parts(p) for p in paths])
        return extract_paths(backup, paths, real, as_data=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        out = extract_paths(backup, paths, staging.resolve(), as_data=True)
        os.rename(staging, target)
    except BaseException:
        remove_tree(staging, ignore_errors=True)
        raise
    return out


def _check_no_symlinks(target: Path, choices: Sequence[tuple[bytes, ...]]) -> None:
    """tar follows a symlink that is already in the target when it writes below it (the guard
    only knows the archive's own): refuse one on the way to, or anywhere below, a chosen path.
    A backup's ordinary absolute symlink, extracted earlier, would otherwise let the next
    extraction write anywhere on the host as root."""
    for parts in choices:
        here = target
        for part in parts:
            here = here / os.fsdecode(part)
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(st.st_mode):
                _refuse_symlink(target, here)
            if not stat.S_ISDIR(st.st_mode):
                break
        else:
            for top, dirs, files in os.walk(here):
                for name in [*dirs, *files]:
                    if os.path.islink(os.path.join(top, name)):
                        _refuse_symlink(target, Path(top) / name)


def _refuse_symlink(target: Path, link: Path) -> None:
    raise StorageError(
        f"target '{target}' holds a symlink at '{link.relative_to(target)}' - extract into "
        "a new directory"
    )


def extract_paths(
    backup: Backup,
    paths: Sequence[str],
    target: Path,
    *,
    idmap: Sequence[IdMapEntry] | None = None,
    log: LogFn = lambda line: None,
    cwd: str | None = None,
    as_data: bool = False,
) -> Extracted:
    """Extract the members at or below ``paths`` into ``target`` (paths as in the container;
    ``target`` relative to ``cwd`` if given; ``as_data`` for the host, see
    ``tarextract.extract``)."""
    choices = [path_parts(p) for p in paths]
    if not choices or any(not c for c in choices):
        raise StorageError("give the paths to extract (the whole root is what a restore is for)")
    select = _Select(choices)
    said: list[str] = []  # tar's first complaint: the reason of its failure (those after it
    # follow from it: a directory it could not make, then each file it could not open there)

    def heard(line: str) -> None:
        if not said and line.startswith("tar: "):
            said.append(line)
        log(line)

    try:
        stats = _extract(backup, target, select, idmap, heard, cwd, as_data)
    except CommandError as err:
        if not said:
            raise
        raise CommandError(f"{err.message} - {said[0]}") from None
    result = Extracted(
        archive_bytes=stats.bytes_in, stopped_early=stats.stopped_early, warnings=stats.warnings
    )
    missing = [c for c in choices if c not in select.seen]
    if missing:
        shown = ", ".join("/" + display_name(b"/".join(c)) for c in missing)
        raise NotFoundError(f"not in backup '{backup.volid}': {shown}")
    result.count, result.members = select.count, select.names
    return result


def _extract(
    backup: Backup,
    target: Path,
    select: _Select,
    idmap: Sequence[IdMapEntry] | None,
    log: LogFn,
    cwd: str | None,
    as_data: bool,
) -> ExtractStats:
    return extract(
        backup.path,
        target,
        compression=backup.compression,
        idmap=idmap,
        log=log,
        select=select,
        stop_when=lambda: select.done,  # single files: stop once the last one is out
        drop_devices=True,
        allow_devices=False,  # files got back are data: a device node on the host is a way in
        cwd=cwd,
        as_data=as_data,
    )
