"""The module paths that live outside ctkit's code: generated LXC configs name the hook and the
network up-script (``lxc.hook.* = <python> -m <module> ...``), and the hook starts the restart
helper the same way. Configs of existing containers keep these paths until they are generated
again, so they are an interface: a module here may not be renamed or moved (a test pins them).
"""

from __future__ import annotations

import shlex
import sys

HOOK = "shared.runtime.hook"  # lxc.hook.pre-start, .mount, .start-host, .post-stop, ...
NET_UPSCRIPT = "shared.net.upscript"  # lxc.net.N.script.up
RESTART = "shared.runtime.restart"  # started by the hook after a reboot from inside

ALL = (HOOK, NET_UPSCRIPT, RESTART)


def argv(module: str, *args: str) -> list[str]:
    """``<this python> -m <module> <args>``."""
    return [sys.executable, "-m", module, *args]


def command(module: str, *args: str) -> str:
    """The same as one line, for an LXC config value. LXC runs it with ``sh -c``: each word is
    quoted, so that a root or a Python below a directory with a space (or a ``$``) in its name
    is the path it says (the start failed in its pre-start hook)."""
    return shlex.join(argv(module, *args))
