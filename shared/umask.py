"""The file mode creation mask ctkit runs with: the user's, less its search (execute) bits.

Hardened hosts set a umask of 027 or 077 for root. Directories ctkit creates on the way to a
container's files (``/var/lib/lxc/<vmid>``, a storage's ``images/<vmid>``, a backup's temporary
directory) then came out 0750 or 0700, and an unprivileged container's root (uid 100000 on the
host) could not reach its own root file system: ``pct create`` failed in tar, ``pct start`` and
backups after it (Debian's default umask is 022). Dropping only the search bits from the mask
makes such directories searchable (never listable) by the container's ids; what the user's
mask withholds from reading and writing stays withheld, so no file becomes readable or
writable by more users than the mask allows.
"""

from __future__ import annotations

import os

SEARCH_BITS = 0o111


def keep_directories_searchable() -> None:
    """Clear the search bits of this process's umask (its children inherit it)."""
    os.umask(os.umask(0) & ~SEARCH_BITS)
