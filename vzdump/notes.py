"""Notes templates (spec vzdump §2.2.5): validation and rendering of ``--notes-template``.

A template is one line; ``\\n`` and ``\\\\`` are the only escapes and ``{{cluster}}``,
``{{guestname}}``, ``{{node}}`` and ``{{vmid}}`` the only variables. Positions in error messages
are 0-based and computed as Proxmox computes them: an escape's is where it starts, a variable's
is the end of ``{{name}}`` minus the length of the name (so ``{{foo}}`` at the start is char 4).
"""

from __future__ import annotations

import re

from shared import paths
from shared.formats.types import FormatError

VARIABLES = ("cluster", "guestname", "node", "vmid")
MAX_LENGTH = 1024
STANDALONE_CLUSTER = "standalone node"

ESCAPE_RE = re.compile(r"\\(.)")
VARIABLE_RE = re.compile(r"\{\{([^\s{}]+)\}\}")


def check_template(template: str) -> None:
    """Raise FormatError naming every unknown escape and variable (Proxmox's wording)."""
    if "\n" in template:
        raise FormatError("contains a line feed")
    problems = [
        f"escape sequence '\\{m.group(1)}' at char {m.start()}"
        for m in ESCAPE_RE.finditer(template)
        if m.group(1) not in ("\\", "n")
    ]
    problems += [
        f"variable '{m.group(1)}' at char {m.end() - len(m.group(1))}"
        for m in VARIABLE_RE.finditer(template)
        if m.group(1) not in VARIABLES
    ]
    if problems:
        raise FormatError("found unknown: " + ", ".join(problems))


def render(
    template: str,
    vmid: int,
    guestname: str | None = None,
    node: str | None = None,
    cluster: str | None = None,
) -> str:
    """The notes text: escapes first, then variables (values are not re-scanned).

    ``guestname`` defaults to ``CT<vmid>``, ``node`` to this host's node name and ``cluster``
    to ``standalone node``. Raises FormatError for a template :func:`check_template` rejects.
    """
    check_template(template)
    values = {
        "cluster": cluster or STANDALONE_CLUSTER,
        "guestname": guestname or f"CT{vmid}",
        "node": node or paths.node_name(),
        "vmid": str(vmid),
    }
    text = ESCAPE_RE.sub(lambda m: "\n" if m.group(1) == "n" else "\\", template)
    pattern = re.compile(r"\{\{(" + "|".join(VARIABLES) + r")\}\}")
    return pattern.sub(lambda m: values[m.group(1)], text)


__all__ = ["MAX_LENGTH", "STANDALONE_CLUSTER", "VARIABLES", "check_template", "render"]
