"""Run the external storage tools (btrfs, mkfs.ext4, losetup, mount, ...) with Proxmox's errors."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from ..errors import CommandError
from ..toolenv import tool_env


def run(argv: Sequence[str], *, ok_codes: Sequence[int] = (0,)) -> str:
    """Run ``argv`` and return its stdout; raise CommandError (with stderr's last line) else."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=tool_env(),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise CommandError(f"command '{argv[0]}' not found") from None
    if proc.returncode not in ok_codes:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = f" - {lines[-1].strip()}" if lines else ""
        raise CommandError(
            f"command '{shlex.join(argv)}' failed: exit code {proc.returncode}{detail}"
        )
    return proc.stdout


def succeeds(argv: Sequence[str]) -> bool:
    """True when ``argv`` exits 0 (its output is discarded)."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            env=tool_env(),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return False
    return proc.returncode == 0
