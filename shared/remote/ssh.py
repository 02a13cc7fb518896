"""Commands on a remote ctkit host through OpenSSH's client, with the pinned host key only.

Every connection uses a known-hosts file holding just the remote's pinned key (under a
``HostKeyAlias``), ``StrictHostKeyChecking=yes`` and ``BatchMode``: a changed or unknown key
fails the connection instead of prompting or learning it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .. import atomic, paths
from ..childoutput import run_bounded
from ..errors import CommandError
from ..printable import printable
from ..toolenv import tool_env
from .config import Remote, parse_hostkey

CONNECT_TIMEOUT = 10
# a remote that answers with more than this on a query is not a ctkit host
MAX_REPLY = 4 * 1024 * 1024
ERR_TAIL = 4096  # of its messages, the last line is what is shown


def known_hosts(remote: Remote) -> Path:
    """A known-hosts file with only this remote's pinned key (rewritten on every use)."""
    keytype, _blob = parse_hostkey(remote.hostkey)
    key = remote.hostkey.split()[1]
    path = paths.run_dir() / "ssh" / f"known_hosts.{remote.name}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic.write_text(path, f"{alias(remote)} {keytype} {key}\n", mode=0o600)
    return path


def alias(remote: Remote) -> str:
    return f"ctkit-remote-{remote.name}"


def ssh_argv(remote: Remote) -> list[str]:
    """``ssh``, its options and the destination."""
    return [*ssh_options(remote), remote.host]


def ssh_options(remote: Remote) -> list[str]:
    """``ssh`` and its options, without the destination (for ``rsync -e``)."""
    argv = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts(remote)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no",
        "-o", f"HostKeyAlias={alias(remote)}",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=3",
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",
        "-F", "/dev/null",
        "-p", str(remote.port),
        "-l", remote.user,
    ]  # fmt: skip
    if remote.identity:
        argv += ["-o", "IdentitiesOnly=yes", "-i", remote.identity]
    return [*argv, "-T"]


def remote_command(remote: Remote, args: Sequence[str]) -> str:
    """The shell command line run on the remote: its ``pct`` with our arguments, quoted."""
    words = [remote.command or "pct", *args]
    if remote.root:
        words = ["env", f"CTKIT_ROOT={remote.root}", *words]
    return shlex.join(words)


def pct_argv(remote: Remote, args: Sequence[str]) -> list[str]:
    """The full local argv that runs ``pct <args>`` on the remote."""
    return [*ssh_argv(remote), "--", remote_command(remote, args)]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_pct(remote: Remote, args: Sequence[str], *, timeout: float = 120) -> str:
    """Run ``pct <args>`` on the remote and return its stdout; CommandError on failure.

    The remote is another machine: what it prints is read up to a bound (a remote that prints
    more is no ctkit host, and is cut off), and its messages are made printable."""
    try:
        code, out, err = run_bounded(
            pct_argv(remote, args),
            max_out=MAX_REPLY,
            err_tail=ERR_TAIL,
            deadline=time.monotonic() + timeout,
            env=tool_env(),
        )
    except subprocess.TimeoutExpired:
        raise CommandError(f"remote '{remote.name}': no answer within {timeout:.0f} s") from None
    if len(out) > MAX_REPLY:
        raise CommandError(f"remote '{remote.name}' did not answer like a ctkit host")
    text = out.decode("utf-8", "replace")
    if code != 0:
        last = printable(_last_line(err.decode("utf-8", "replace")) or _last_line(text))
        if code == 255:
            raise CommandError(f"remote '{remote.name}': ssh failed - {last}")
        raise CommandError(f"remote '{remote.name}': {last or f'exit code {code}'}")
    return text
