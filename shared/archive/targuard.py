"""The extraction guard: decide, member by member, whether tar may see it.

Threat model: the archive is hostile. It may try to create or change a file outside the target
root through (a) an absolute member name, (b) a ``..`` component, (c) a symlink member followed
by a member written *through* it (``./a -> /etc`` then ``./a/passwd``, also via relative
``../..`` targets, chains of symlinks, or a hard link whose target path runs through the
symlink), (d) a hard link whose target is absolute or climbs out with ``..``, (e) names hidden in
pax ``path``/``linkpath``, GNU long names or ``GNU.sparse.name`` that differ from the ustar name,
(f) device nodes in an unprivileged (id-mapped) restore.

Design: symlink *targets* are never judged. A Debian root file system is full of absolute
symlinks (``/etc/mtab -> /proc/self/mounts``, ``lib64/ld-linux-x86-64.so.2 -> /lib/...``) that
are resolved inside the container at run time and are harmless on disk. What is forbidden is
*writing through* a symlink during extraction, and that is checked purely lexically:

* every candidate name of every member must be relative and free of ``..`` after dropping
  ``.`` and empty components; only a directory may name the root itself;
* every symlink member's names are remembered (by a hash of their components: an archive of a
  million symlinks kept 260 MB of names); a later member any of whose names has a parent
  component that is a remembered symlink is refused. The same holds for a hard link's target.
  ``hash`` of bytes is keyed per process, so an archive cannot aim at a collision, and one
  could only refuse a member, never let one through;
  A tar of a real file system never contains such members (tar does not descend into
  symlinks), so legitimate archives are unaffected, whatever their symlinks point at;
* a directory member may not reuse the name of an earlier symlink (tar would apply its mode
  and owner to the symlink's target);
* hard link targets must be relative, ``..``-free and not under a remembered symlink; a link to
  the symlink itself is fine (``link(2)`` does not follow it), and is remembered as a symlink
  in turn, so nothing can be written through it either;
* device nodes are refused in an id-mapped extraction (kept out of tar entirely); with
  ``ignore_unpack_errors`` they are dropped with a warning instead, which mirrors what
  ``--ignore-unpack-errors`` achieves in Proxmox. Members below ``dev/`` are never extracted
  (tar's ``--exclude ./dev/*``), so devices there are dropped silently.

The scanner (``tarscan``) holds a member's header bytes until this guard approves it, so tar
never receives a refused header; refusal is an :class:`ArchiveError` naming the member and
stops the extraction. GNU tar's own protections stay on as a second layer: it strips leading
``/``, skips ``..`` members, and extracts symlinks with absolute or ``..`` targets as
placeholder files until the very end, so even a member the guard missed could not write
through them. The target root itself must be a directory the caller created (no symlinks of
its own on the way in); pre-existing content below it is the caller's responsibility.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.archive.tarformat import BLK, CHR, LNK, SYM, Member, display_name
from shared.archive.tarscan import ScanSink
from shared.errors import ArchiveError


def split_name(name: bytes) -> tuple[bytes, ...] | None:
    """Components of a relative, ``..``-free name; None when the name is absolute or climbs."""
    if name.startswith(b"/"):
        return None
    parts = tuple([p for p in name.split(b"/") if p and p != b"."])
    if b".." in parts:
        return None
    return parts


_HASH_MOD = (1 << 61) - 1


def _next_hash(running: int, part: bytes) -> int:
    """The hash of a path one component longer: each prefix's follows from the one before
    (building every prefix took time quadratic in the depth; a 639-byte archive kept a core
    busy for minutes)."""
    return (running * 1_000_003 + hash(part)) % _HASH_MOD


def _path_hash(parts: tuple[bytes, ...]) -> int:
    running = 0
    for part in parts:
        running = _next_hash(running, part)
    return running


class ExtractGuard(ScanSink):
    def __init__(
        self,
        *,
        allow_devices: bool,
        drop_devices: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.allow_devices = allow_devices
        self.drop_devices = drop_devices
        self.warn = warn
        self._link_hashes: set[int] = set()  # _path_hash of each symlink member's names
        self._deepest_link = 0  # components of the deepest of them
        self.dropped = 0

    def member(self, member: Member) -> bool:
        all_parts = [self._checked(member, name, "") for name in member.names]
        links_symlink = False
        if member.type == LNK:
            for target in member.linknames or (b"",):
                links_symlink |= self._check_link_target(member, target)
        if any(not parts for parts in all_parts) and not member.is_dir():
            self._refuse(member, "member would replace the target directory itself")
        if member.is_dir() and self._link_hashes:
            for parts in all_parts:
                if _path_hash(parts) in self._link_hashes:
                    # tar treats an existing directory symlink as the directory and would set
                    # the member's mode and owner on whatever it points at.
                    self._refuse(member, "directory over an earlier symlink")
        if member.type in (CHR, BLK) and not self.allow_devices:
            return self._device(member, all_parts)
        if member.type == SYM or links_symlink:
            for parts in all_parts:
                self._link_hashes.add(_path_hash(parts))
                self._deepest_link = max(self._deepest_link, len(parts))
        return True

    def _checked(self, member: Member, name: bytes, what: str) -> tuple[bytes, ...]:
        parts = split_name(name)
        if parts is None:
            kind = "absolute path" if name.startswith(b"/") else "path contains '..'"
            shown = f" '{display_name(name)}'" if name != member.name or what else ""
            self._refuse(member, f"{what}{kind}{shown}")
        assert parts is not None
        depths = min(len(parts) - 1, self._deepest_link)  # no symlink is deeper
        running = 0
        for depth, part in enumerate(parts[:depths], 1):
            running = _next_hash(running, part)
            if running in self._link_hashes:
                prefix = display_name(b"/".join(parts[:depth]))
                self._refuse(member, f"{what}path passes through symlink '{prefix}'")
        return parts

    def _check_link_target(self, member: Member, target: bytes) -> bool:
        """Refuses a bad target; True when the target is a remembered symlink.

        ``link(2)`` does not follow a symlink, so a hard link to one is a symlink too: it is
        remembered as one, or a member could be written through it (``h -> s -> /tmp``).
        """
        parts = self._checked(member, target, "hard link target: ")
        if not parts:
            self._refuse(member, "hard link to the target directory")
        return _path_hash(parts) in self._link_hashes

    def _device(self, member: Member, all_parts: list[tuple[bytes, ...]]) -> bool:
        self.dropped += 1
        if all(len(p) > 1 and p[0] == b"dev" for p in all_parts):
            return False  # tar would exclude it anyway (--exclude ./dev/*)
        if self.drop_devices:
            if self.warn is not None:
                self.warn(
                    f"skipping device node '{member.display}' "
                    "(not allowed in an unprivileged container)"
                )
            return False
        self._refuse(member, "device node not allowed in an unprivileged container")
        return False

    @staticmethod
    def _refuse(member: Member, reason: str) -> None:
        raise ArchiveError(f"unsafe archive member '{member.display}': {reason}")
