"""LXC's command socket, asked directly and with a deadline.

liblxc's own client (python-lxc's ``Container.state``, ``init_pid``) waits for ever for the
container's monitor to answer, and holds the interpreter meanwhile: a monitor that is stopped,
stuck, or still in a long start hung ``pct status``, ``pct list`` and a nightly vzdump with
it. The two questions ctkit asks most are put here with a deadline instead; a monitor that
does not answer in time is :class:`MonitorSilent`, one line, never a hang.

The wire format is liblxc 4.0/5.0's (what Proxmox's own client speaks too): a request
``{int cmd; int datalen; void *data}`` and an answer ``{int ret; int datalen; void *data}``
in host byte order, the answer's value carried in its ``data`` field. Nothing listening on
the socket (refused, or closed without an answer) is a container that is not running.
"""

from __future__ import annotations

import socket
import struct

from ..errors import StateError

GET_STATE = 3
GET_INIT_PID = 4
STATES = ("STOPPED", "STARTING", "RUNNING", "STOPPING", "ABORTING", "FREEZING", "FROZEN", "THAWED")
ANSWER_TIMEOUT = 5.0  # a monitor answers within a millisecond; a start hook may keep it busy

_MESSAGE = struct.Struct("@iiP")  # the request and the answer have the same layout


class MonitorSilent(StateError):
    """The container's monitor listens but gave no answer in time."""

    def __init__(self, vmid: int, timeout: float) -> None:
        super().__init__(
            f"CT {vmid}: LXC's monitor does not answer (no reply in {timeout:g} s)",
            hint=f"see 'ps -eo pid,stat,args | grep \"lxc monitor\"' for its process ({vmid})",
        )


def ask(vmid: int, name: str, cmd: int, timeout: float = ANSWER_TIMEOUT) -> int | None:
    """Send ``cmd`` to the monitor on abstract socket ``name`` (``@`` and the path); the
    ``data`` value of its answer, or None when no monitor is there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # the monitor reads the caller's credentials; some kernels attach them only when asked
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(timeout)
        try:
            sock.connect(b"\0" + name[1:].encode())
            sock.sendall(_MESSAGE.pack(cmd, 0, 0))
            answer = _read_answer(sock)
        except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError, BrokenPipeError):
            return None
        except TimeoutError:
            raise MonitorSilent(vmid, timeout) from None
    if answer is None:
        return None
    ret, _datalen, value = _MESSAGE.unpack(answer)
    if ret < 0:
        raise StateError(f"CT {vmid}: LXC's monitor refused the request (error {-ret})")
    return int(value)


def _read_answer(sock: socket.socket) -> bytes | None:
    """The fixed-size answer; None when the monitor closed the connection first (it is
    going away: the container has stopped)."""
    data = b""
    while len(data) < _MESSAGE.size:
        part = sock.recv(_MESSAGE.size - len(data))
        if not part:
            return None
        data += part
    return data


def state(vmid: int, name: str, timeout: float = ANSWER_TIMEOUT) -> str:
    """LXC's state name for the container; ``STOPPED`` when no monitor is there."""
    value = ask(vmid, name, GET_STATE, timeout)
    if value is None:
        return "STOPPED"
    if not 0 <= value < len(STATES):
        raise StateError(f"CT {vmid}: LXC's monitor answered an unknown state ({value})")
    return STATES[value]


def init_pid(vmid: int, name: str, timeout: float = ANSWER_TIMEOUT) -> int | None:
    """The host pid of the container's init; None when it is not running."""
    value = ask(vmid, name, GET_INIT_PID, timeout)
    if value is None:
        return None
    pid = value if value < 1 << 63 else value - (1 << 64)  # a pointer-sized -1: no init
    return pid if pid > 0 else None
