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


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) with the C locale for the tool."""
    env = dict(os.environ if base is None else base)
    env.pop("LANGUAGE", None)
    env["LC_ALL"] = "C"
    return env
