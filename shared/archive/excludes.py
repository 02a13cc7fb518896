"""vzdump's exclusion patterns as tar matches them: which are anchored at the container's root.

Every member of a vzdump archive is named from the root's own entry, ``./``. tar tries an
unanchored pattern (``--no-anchored``) on the whole name as well as on what follows each
``/``, and with a leading directory's match (``./`` being the leading directory of every
name). So a pattern whose start can take that ``.`` matches every member: ``.*`` (meant for
dotfiles), ``?``, ``?*``, ``[!x]``, ``.[!.]*``, ``.??*``. Proxmox hands such patterns to tar
as they are, and the backup comes out empty, without a warning. vzdump's rule (a pattern
without a leading ``/`` matches a name at any depth) is what the user meant; for these
patterns it is given to tar as two anchored ones, ``./P`` and ``./*/P`` (tar's ``*`` crosses
``/`` in exclusions): together they match what follows each ``/`` of a name, as
``--no-anchored`` does, but never the root's ``./``. Every other pattern keeps Proxmox's
command line.

A pattern that starts with ``./`` only ever matched as a whole name, from the root: it is
anchored, as ``/x`` is. One that starts with ``*/`` or ``**/`` matched ``x`` at any depth
(the wildcard taking the root's ``.`` or the directories above), which is what ``x`` alone
means: it is given as ``x``. tar drops the same files for both; restic, whose ``*`` stops at
a ``/``, then drops a top-level ``x`` too.
"""

from __future__ import annotations

WILDCARDS = "*?["


def rooted(pattern: str) -> str | None:
    """``/x`` for a pattern anchored at the container's root (``/x`` or ``./x``), else None."""
    if pattern.startswith("/"):
        return pattern
    if pattern.startswith("./"):
        return pattern[1:]
    return None


def normalized(pattern: str) -> str:
    """The pattern as both tar and restic are given it (see the module text)."""
    if (path := rooted(pattern)) is not None:
        return path
    for lead in ("**/", "*/"):
        if pattern.startswith(lead) and len(pattern) > len(lead):
            return pattern[len(lead) :]
    return pattern


def takes_root(pattern: str) -> bool:
    """Whether tar's unanchored match of ``pattern`` can take the ``./`` that every member's
    name starts with: the pattern starts with ``?`` or a class (either may be the ``.``), with
    a ``.`` followed by nothing, a wildcard or a ``/``, or with ``*`` followed by any of those
    (``*.log`` cannot: its ``.`` would have to be the root's, followed by ``l``). A backslash
    makes the next character a literal, as in tar."""
    char, wild, rest = _unit(pattern)
    if char == "*" and wild:
        while rest.startswith("*"):
            rest = rest[1:]
        if not rest:
            return True
        char, wild, rest = _unit(rest)
        if wild or char == "/":
            return True
    elif wild:
        return True
    if char != ".":
        return False
    second, wild, _rest = _unit(rest)
    return wild or second in ("", "/")


def _unit(pattern: str) -> tuple[str, bool, str]:
    """The pattern's first character, whether it is a wildcard (``*``, ``?``, ``[``), and
    what follows it."""
    if not pattern:
        return "", False, ""
    if pattern[0] == "\\" and len(pattern) > 1:
        return pattern[1], False, pattern[2:]
    return pattern[0], pattern[0] in WILDCARDS, pattern[1:]


def tar_groups(patterns: list[str]) -> tuple[list[str], list[str]]:
    """(unanchored patterns, anchored ones as ``/``-paths from the root) for tar."""
    unanchored: list[str] = []
    anchored: list[str] = []
    for pattern in map(normalized, patterns):
        if pattern.startswith("/"):
            anchored.append(pattern)
        elif takes_root(pattern):
            anchored += [f"/{pattern}", f"/*/{pattern}"]
        else:
            unanchored.append(pattern)
    return unanchored, anchored
