"""Remove a guest from the backup jobs that name it (``pct destroy --purge``).

Text-based on purpose: pct may not import vzdump's job schema, and everything but the ``vmid``
and ``exclude`` lines of ``vzdump:`` sections must stay byte for byte as it is. A job left with
no guest is removed, as Proxmox does. The edit runs as a :mod:`jobsfile` transaction, under
the same lock as ``vzdump job ...``.
"""

from __future__ import annotations

import re

from . import jobsfile

HEADER = re.compile(r"^vzdump:\s*(\S+)\s*$")
VMID_LINE = re.compile(r"^(\s+vmid\s+)(\S.*?)\s*$")
EXCLUDE_LINE = re.compile(r"^(\s+exclude\s+)(\S.*?)\s*$")


def _edit_block(block: list[str], vmid: int) -> tuple[list[str] | None, bool]:
    """(new block or None to drop it, changed?) for one section. A job naming its guests loses
    ``vmid`` from that list (and goes with the last one); any other job loses it from its
    ``exclude`` list, as Proxmox's does: a new guest given the id later is backed up."""
    if not block or not HEADER.match(block[0]):
        return block, False
    for line_re, drop_job in ((VMID_LINE, True), (EXCLUDE_LINE, False)):
        at = next((i for i, line in enumerate(block) if line_re.match(line)), None)
        if at is None:
            continue
        rest = _without(block[at], line_re, vmid)
        if rest is None:
            return block, False
        if not rest and drop_job:
            return None, True
        return [*block[:at], *([rest] if rest else []), *block[at + 1 :]], True
    return block, False


def _without(line: str, line_re: re.Pattern[str], vmid: int) -> str | None:
    """The line without ``vmid`` in its list, "" when no id is left; None when it lacks it."""
    m = line_re.match(line)
    assert m is not None
    ids = [v for v in re.split(r"[,;\s]+", m.group(2)) if v]
    keep = [v for v in ids if v != str(vmid)]  # pve-vmid: no leading zeros
    if len(keep) == len(ids):
        return None
    return m.group(1) + ",".join(keep) if keep else ""


def remove_guest(vmid: int) -> list[str]:
    """Drop ``vmid`` from every job's ``vmid`` or ``exclude`` list; returns the ids of the
    jobs changed."""
    with jobsfile.transaction() as jobs:
        text = jobs.read()
        kept, changed = _without_guest(text, vmid)
        if changed:
            jobs.write("\n\n".join("\n".join(b) for b in kept) + ("\n" if kept else ""))
    return changed


def _without_guest(text: str, vmid: int) -> tuple[list[list[str]], list[str]]:
    """(the blocks to keep, the ids of the jobs changed)."""
    blocks = [b.split("\n") for b in text.rstrip("\n").split("\n\n")] if text.strip() else []
    changed: list[str] = []
    kept: list[list[str]] = []
    for block in blocks:
        new, was_changed = _edit_block(block, vmid)
        if was_changed:
            m = HEADER.match(block[0])
            changed.append(m.group(1) if m else "?")
        if new is not None:
            kept.append(new)
    return kept, changed
