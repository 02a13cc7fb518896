"""LXC's command socket with a deadline, against monitors played by the test on an abstract
socket of their own: one that answers, one that never does, one that hangs up, one that lies.
(The real monitor, asked beside python-lxc and then stopped with SIGSTOP, is in
tests/pct/test_lifecycle.py.)"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared import paths
from shared.errors import StateError
from shared.runtime import lxcapi, lxccmd

Behaviour = Callable[[socket.socket, int], None]


def answer(ret: int, value: int) -> Behaviour:
    def reply(conn: socket.socket, _cmd: int) -> None:
        conn.sendall(struct.pack("@iiP", ret, 0, value))

    return reply


def silent(conn: socket.socket, _cmd: int) -> None:
    time.sleep(30)  # far beyond the caller's timeout, also on a loaded host (a daemon thread)


def hang_up(conn: socket.socket, _cmd: int) -> None:
    pass


def half_answer(conn: socket.socket, _cmd: int) -> None:
    conn.sendall(b"\0" * 7)


class Monitor:
    """A listener on ``@/ctkit-test/<uuid>/command`` that reads one request per connection and
    acts as told; it keeps the commands it was sent."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.name = f"@/ctkit-test/{uuid.uuid4().hex}/command"
        self.behaviour = behaviour
        self.commands: list[int] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(16, socket.MSG_WAITALL)
                cmd, datalen, _data = struct.unpack("@iiP", request)
                assert datalen == 0
                self.commands.append(cmd)
                self.behaviour(conn, cmd)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def monitor() -> Iterator[Callable[[Behaviour], Monitor]]:
    made: list[Monitor] = []

    def make(behaviour: Behaviour) -> Monitor:
        made.append(Monitor(behaviour))
        return made[-1]

    yield make
    for mon in made:
        mon.close()


def test_state_and_init_pid_are_read_from_the_answer(monitor: Callable[..., Monitor]) -> None:
    running = monitor(answer(0, 2))
    assert lxccmd.state(7, running.name) == "RUNNING"
    frozen = monitor(answer(0, 6))
    assert lxccmd.state(7, frozen.name) == "FROZEN"
    pid = monitor(answer(0, 4242))
    assert lxccmd.init_pid(7, pid.name) == 4242
    assert running.commands == [lxccmd.GET_STATE] and pid.commands == [lxccmd.GET_INIT_PID]


def test_no_init_is_none(monitor: Callable[..., Monitor]) -> None:
    assert lxccmd.init_pid(7, monitor(answer(0, (1 << 64) - 1)).name) is None  # -1
    assert lxccmd.init_pid(7, monitor(answer(0, 0)).name) is None


def test_nothing_listening_is_stopped() -> None:
    name = f"@/ctkit-test/{uuid.uuid4().hex}/command"
    assert lxccmd.state(7, name) == "STOPPED"
    assert lxccmd.init_pid(7, name) is None


@pytest.mark.parametrize("behaviour", [hang_up, half_answer], ids=["hang-up", "half-answer"])
def test_a_monitor_that_hangs_up_is_going_away(
    monitor: Callable[..., Monitor], behaviour: Behaviour
) -> None:
    assert lxccmd.state(7, monitor(behaviour).name) == "STOPPED"


def test_a_silent_monitor_is_one_error_in_time(monitor: Callable[..., Monitor]) -> None:
    mon = monitor(silent)
    started = time.monotonic()
    with pytest.raises(lxccmd.MonitorSilent) as err:
        lxccmd.state(7, mon.name, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 10  # not a wait for the monitor to hang up
    assert str(err.value) == "CT 7: LXC's monitor does not answer (no reply in 0.3 s)"
    assert err.value.exit_code == StateError.exit_code


def test_an_unknown_state_or_an_error_is_refused(monitor: Callable[..., Monitor]) -> None:
    with pytest.raises(StateError, match=r"unknown state \(8\)"):
        lxccmd.state(7, monitor(answer(0, 8)).name)
    with pytest.raises(StateError, match=r"refused the request \(error 22\)"):
        lxccmd.init_pid(7, monitor(answer(-22, 0)).name)


def test_fnv1a_64_known_values() -> None:
    assert lxcapi.fnv1a_64(b"") == 0xCBF29CE484222325
    assert lxcapi.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert lxcapi.fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_socket_name_is_liblxcs_plain_or_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    """liblxc names the socket ``<lxcpath>/<name>/command`` while that fits in an address
    (105 bytes), else by the FNV-1a hash of ``<lxcpath>/<name>``; a long lxcpath (a test's)
    was not looked for at all, and every such CT counted as stopped when its monitor ran."""
    fits = "/" + "p" * (105 - len("/100/command") - 1)
    monkeypatch.setattr(paths, "lxc_path", lambda: Path(fits))
    assert lxcapi.socket_name(100) == f"@{fits}/100/command"
    assert len(lxcapi.socket_name(100)) == 1 + 105
    longer = fits + "p"
    monkeypatch.setattr(paths, "lxc_path", lambda: Path(longer))
    digest = lxcapi.fnv1a_64(f"{longer}/100".encode())
    assert lxcapi.socket_name(100) == f"@lxc/{digest:016x}/command"
