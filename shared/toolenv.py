"""The environment of the external tools whose output ctkit reads.

tar, rsync, cp and the storage tools print their messages in the user's language: Debian's tar
ships German, French, ... translations, and under ``LANG=de_DE.UTF-8`` it ends an archive with
``Gesamtzahl geschriebener Bytes: ...``. ctkit reads that line to know that tar wrote the end of
the archive (a killed tar never prints it); in German every direct backup failed with "tar
output ended without end of archive", and the backup logs (which ``vzdump verify`` reads too)
changed language. These tools run in the C locale. ``LANGUAGE`` is dropped: GNU gettext
prefers it to the locale outside the C locale. Neither changes what the tools copy: file names
are bytes to them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# root's PATH on Debian: where the tools ctkit runs live (mkfs.ext4, losetup, e2fsck in sbin)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def complete_path() -> None:
    """Add the directories of :data:`SYSTEM_PATH` that this process's PATH lacks, after the
    ones it has (a tool of the caller's own still comes first). cron runs a job with
    ``PATH=/usr/bin:/bin`` and ``env -i`` with none: ``pct create`` failed there with "command
    'mkfs.ext4' not found", as did every tool in sbin. Proxmox's tools set theirs too."""
    have = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    missing = [d for d in SYSTEM_PATH.split(os.pathsep) if d not in have]
    if missing:
        os.environ["PATH"] = os.pathsep.join([*have, *missing])


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) with the C locale for the tool."""
    env = dict(os.environ if base is None else base)
    env.pop("LANGUAGE", None)
    env["LC_ALL"] = "C"
    return env
