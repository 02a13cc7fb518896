"""Run the external storage tools (btrfs, mkfs.ext4, losetup, mount, ...) with Proxmox's errors."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence

from .. import signals
from ..errors import CommandError
from ..parentdeath import tied_to_parent
from ..toolenv import tool_env


def run(argv: Sequence[str], *, ok_codes: Sequence[int] = (0,), tied: bool = False) -> str:
    """Run ``argv`` and return its stdout; raise CommandError (with stderr's last line) else.
    ``tied``: the tool ends with this process even outside held work (one that runs long on a
    volume, an e2fsck: left running after a ``kill -9``, it kept the next command's mount out)."""
    try:
        rc, stdout, stderr = _finished(argv, tied)
    except FileNotFoundError:
        raise CommandError(f"command '{argv[0]}' not found") from None
    if rc not in ok_codes:
        lines = [ln for ln in (stderr or stdout).splitlines() if ln.strip()]
        detail = f" - {lines[-1].strip()}" if lines else ""
        raise CommandError(f"command '{shlex.join(argv)}' failed: exit code {rc}{detail}")
    return stdout


def succeeds(argv: Sequence[str]) -> bool:
    """True when ``argv`` exits 0 (its output is discarded)."""
    try:
        return _finished(argv)[0] == 0
    except FileNotFoundError:
        return False


def _finished(argv: Sequence[str], tied: bool = False) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``argv``. Interrupted (Ctrl-C, TERM), the tool is
    killed and reaped before the exception goes on: subprocess.run leaves a killed child to
    exit on its own, and the caller's cleanup found it still holding what it had open (a
    killed e2fsck its image, and with it the MMP mark that cleanup was to clear).

    In work a signal must not cut short (``signals.held``: a cleanup, a step and its record)
    the tool has a process group of its own, so that a Ctrl-C (SIGINT to the terminal's
    foreground group) reaches only this process, which waits for the tool and then acts: it
    killed a cleanup's ``losetup`` checking an old volume, and the replaced volume stayed,
    named by nothing. Such a tool still ends with this process (``setpriv --pdeathsig``), as
    a kill of the whole group ended it before: it never runs on beside the next command's
    recovery."""
    shielded = signals.holding()
    if (shielded or tied) and shutil.which(argv[0]) is None:
        raise FileNotFoundError(argv[0])
    with subprocess.Popen(
        tied_to_parent(argv) if shielded or tied else list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tool_env(),
        process_group=0 if shielded else None,
    ) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode, stdout, stderr
