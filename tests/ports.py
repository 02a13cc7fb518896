"""A port for a server a test starts as its own process (sshd, rclone, a web server)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

FALLBACK_EPHEMERAL = (32768, 60999)  # the kernel's default ip_local_port_range


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return FALLBACK_EPHEMERAL


def free_port() -> int:
    """A port that is free now, below the kernel's ephemeral range: the server binds it only
    after the test has let go of it, and a port the kernel handed out (``bind`` to port 0, an
    outgoing connection of another test) could be taken meanwhile; one below that range is
    only taken by a listener that chose it, as this one did."""
    low, _high = _ephemeral()
    for _ in range(1000):
        port = random.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")
