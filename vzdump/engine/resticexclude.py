"""vzdump's exclusion patterns for a restic backup, and the size of what they leave.

restic matches an exclude pattern against the *absolute* path of every item, and a pattern
without a leading ``/`` matches a run of components anywhere in it. Handed over as they are,
vzdump's unanchored patterns would also match the stage the backup runs from
(``<root>/run/vzdump-restic/<vmid>/rootfs``): ``--exclude-path run`` would drop the whole
container, ``config`` the backed-up pct.conf. So every pattern is anchored below the stage's
``rootfs/`` here: ``/var/foo*`` from the container's root, ``bar`` as ``rootfs/**/bar`` at
any depth, and the stage's own path is glob-escaped. The globs are restic's (Go's): unlike in
tar, a ``*`` never crosses a ``/`` (so restic keeps what tar's crossing ``*`` would leave out);
a directory that matches is left out with all below it. Where restic's reading would leave out
*more* than tar's, the pattern is first put in tar's terms: ``./x`` is anchored at the root
(tar only ever matched it there, see :mod:`shared.archive.excludes`), a ``[!...]`` class is
negated (Go reads ``!`` literally and negates only ``[^...]``), and a ``**`` between two
components stands for at least one directory (restic's also matches none: ``/a/**/c`` would
drop ``/a/c``, which tar keeps).

The size (restic's "bytes processed": the apparent size of every regular file backed up) is
measured before restic starts, by walking the tree with the same patterns in restic's
semantics, so that it can be a tag of the snapshot as it is written: restic cannot add a tag
to a running backup, and a second restic run only for the tag costs a repository opening
(its key derivation alone is about half a second). Should restic still process another amount
(a corner of its matching the walk does not share, such as two ``**`` in one pattern), the
caller corrects the tag afterwards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from shared.archive.excludes import normalized

GLOB_SPECIAL_RE = re.compile(r"([\\*?\[\]])")


def escape(path: Path | str) -> str:
    """A literal path as a restic pattern (Go's filepath.Match escapes with a backslash)."""
    return GLOB_SPECIAL_RE.sub(r"\\\1", str(path))


def effective(excludes: Sequence[str], unprivileged: bool) -> list[str]:
    """The patterns a restic backup applies, as the tar path does: ``lost+found`` at any depth
    for an unprivileged container; patterns with a trailing slash never match in tar, so they
    are dropped here too (the caller warns about them, once, for both paths); each is
    normalized as for tar (``./x`` is ``/x``, ``*/x`` is ``x``)."""
    out = ["lost+found"] if unprivileged else []
    return out + [normalized(p) for p in excludes if p and not p.endswith("/")]


def as_restic(pattern: str) -> str:
    """A pattern restic accepts, read as tar reads it (see the module text): one Go's glob
    refuses (``x[``, a trailing backslash), which would make restic refuse the whole backup,
    is taken literally, as tar's fnmatch does."""
    translated = _tar_classes(_tar_double_stars(pattern))
    if _parsed(translated) is None:
        return ("/" if pattern.startswith("/") else "") + escape(pattern.lstrip("/"))
    return translated


def _tar_double_stars(pattern: str) -> str:
    """In an anchored pattern, a ``**`` component followed by another one as ``*/**``: at
    least one directory. (An unanchored pattern's ``**`` already stands for at least one:
    restic reads a second ``**`` in a pattern, after the ``**/`` it is given behind, so.)"""
    if not pattern.startswith("/"):
        return pattern
    comps = pattern.split("/")
    return "/".join(
        "*/**" if comp == "**" and any(comps[i + 1 :]) else comp for i, comp in enumerate(comps)
    )


def _tar_classes(pattern: str) -> str:
    """Each ``[!...]`` class as ``[^...]``; escaped characters and class members untouched."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch != "[":
            out.append(ch)
            i += 1
            continue
        end = _class_end(pattern, i)
        if end < 0:  # no class: a literal ``[`` (Go refuses it; as_restic escapes it)
            out.append(ch)
            i += 1
            continue
        body = pattern[i + 1 : end]
        out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
        i = end + 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` that ends the class opened at ``start``, or -1: as in fnmatch, a
    ``]`` right after the opening (and its ``!`` or ``^``) is a member."""
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return -1


def exclude_args(rootfs: Path, patterns: Sequence[str]) -> list[str]:
    """``--exclude`` arguments, each anchored below the stage's ``rootfs`` directory."""
    base = escape(rootfs)
    out: list[str] = []
    for pattern in map(as_restic, patterns):
        if pattern.startswith("/"):
            out += ["--exclude", f"{base}{pattern}"]
        else:
            out += ["--exclude", f"{base}/**/{pattern}"]
    return out


# --- restic's matching, for the size walk ----------------------------------------------------


def _component_regex(glob: str) -> str | None:
    """One path component of a Go filepath.Match pattern as a regex (None: a pattern Go
    refuses)."""
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 == len(glob):
                return None
            i += 1
            out.append(re.escape(glob[i]))
        elif ch == "[":
            end, cls = _char_class(glob, i + 1)
            if end < 0:
                return None
            out.append(cls)
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _char_class(glob: str, i: int) -> tuple[int, str]:
    """``[...]`` from ``glob[i:]`` (after the ``[``): (index of the ``]``, regex class), or
    (-1, "") for a class Go refuses (unterminated, empty, a bare ``-`` not between two
    characters; ``]`` and ``-`` as characters must be escaped there)."""
    negated = i < len(glob) and glob[i] == "^"
    i += negated
    body: list[str] = []
    while i < len(glob) and glob[i] != "]":
        ch = glob[i]
        if ch == "-":
            if not body or i + 1 >= len(glob) or glob[i + 1] == "]":
                return -1, ""
            body.append("-")
        elif ch == "\\":
            if i + 1 == len(glob):
                return -1, ""
            i += 1
            body.append(re.escape(glob[i]))
        else:
            body.append(re.escape(ch))
        i += 1
    if i >= len(glob) or not body:
        return -1, ""
    return i, ("[^/" if negated else "[") + "".join(body) + "]"


def _body(comps: Sequence[str], *, second: bool = False) -> str | None:
    """The regex of the components; ``second``: each ``**`` follows the one an unanchored
    pattern gets in front, and restic then takes it for at least one directory."""
    parts: list[str] = []
    for index, comp in enumerate(comps):
        if comp == "**":
            parts.append("(?:[^/]+/)+" if second else "(?:.*/)?")
            continue
        rx = _component_regex(comp)
        if rx is None:
            return None
        parts.append(rx + ("/" if index + 1 < len(comps) else ""))
    return "".join(parts)


def _components(pattern: str) -> list[str]:
    comps = [c for c in pattern.split("/") if c not in ("", ".")]
    while comps and comps[-1] == "**":  # matches the directory itself and all below
        comps.pop()
    return comps


def _parsed(pattern: str) -> tuple[list[str], str] | None:
    """The pattern's components and the regex of them (None: Go refuses the pattern)."""
    comps = _components(pattern)
    body = _body(comps, second=not pattern.startswith("/")) if comps else None
    return (comps, body) if body is not None else None


def _anchored(pattern: str, body: str) -> str:
    """The regex over a whole relative path: unanchored patterns match at any depth."""
    return body if pattern.startswith("/") else "(?:.*/)?" + body


def pattern_regex(pattern: str) -> re.Pattern[str] | None:
    """A vzdump pattern as a regex over a path relative to the container's root (``a/b``):
    it matches exactly the items restic excludes first (their contents are never visited)."""
    parsed = _parsed(pattern)
    return re.compile(_anchored(pattern, parsed[1]), re.DOTALL) if parsed is not None else None


class _Matcher:
    """The patterns sorted by what they need to see of an entry. Since the walk never enters
    an excluded directory, a pattern without ``**`` only has to be tried where it can match
    whole: an unanchored one of a single component on the entry's name, an anchored one of k
    components at depth k. The rest are tried on the whole relative path."""

    def __init__(self, patterns: Sequence[str]) -> None:
        names: list[str] = []
        depth: dict[int, list[str]] = {}
        general: list[str] = []
        for pattern in map(as_restic, patterns):
            parsed = _parsed(pattern)
            if parsed is None:
                continue
            comps, body = parsed
            if "**" in comps or (not pattern.startswith("/") and len(comps) > 1):
                general.append(_anchored(pattern, body))
            elif pattern.startswith("/"):
                depth.setdefault(len(comps), []).append(body)
            else:
                names.append(body)
        self.names = _alternation(names)
        self.depth = {k: rx for k, v in depth.items() if (rx := _alternation(v)) is not None}
        self.general = _alternation(general)

    def excluded(self, name: str, rel: str, level: int) -> bool:
        if self.names is not None and self.names.fullmatch(name):
            return True
        at_depth = self.depth.get(level)
        if at_depth is not None and at_depth.fullmatch(rel):
            return True
        return self.general is not None and self.general.fullmatch(rel) is not None


def _alternation(bodies: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{b})" for b in bodies), re.DOTALL) if bodies else None


def tree_size(top: Path, patterns: Sequence[str]) -> int:
    """Bytes of the regular files below ``top`` that the patterns leave (symlinks not
    followed, mount points below crossed, as restic does)."""
    matcher = _Matcher(patterns)
    total = 0
    stack: list[tuple[str, str, int]] = [(str(top), "", 1)]
    while stack:
        path, rel, level = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue  # restic reports what it cannot read, and the backup then fails
        for entry in entries:
            name = rel + entry.name
            if matcher.excluded(entry.name, name, level):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):  # the type from readdir: no stat
                    stack.append((entry.path, name + "/", level + 1))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
