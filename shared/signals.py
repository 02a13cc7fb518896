"""Signals during a long operation: a backup job (spec vzdump §1.4, §6, §7) or a restore.

INT, TERM, HUP and QUIT interrupt the operation once: the first one raises ``KeyboardInterrupt``
(the command ends with ``interrupted by signal``, exit 130, after its cleanup; in a backup job
the guest fails, the job aborts and the remaining guests are reported as aborted). Cleanup code
runs inside :func:`held`: a signal that arrives there is only noted, so a container is always
thawed or restarted, its snapshot removed, its volumes unmounted and freed and its lock dropped.
Later signals do not break cleanup either (``vzdump --stop`` or an impatient second Ctrl-C).
They only cut short a user's script the cleanup runs (a hook's ``backup-abort``, ``log-end``,
``pre-restart``...): :func:`stream_lines` ends it with :class:`CutShort`, and the cleanup goes
on without it. One that hung (a NAS that did not answer) held a stopped container down and
locked, whatever was sent to the job. Without these handlers TERM and HUP would end the process
on the spot, with no cleanup at all.

Work run in other threads while the main thread only waits (held) hears of a signal as
follows: the handler just notes it, and each thread raises ``KeyboardInterrupt`` itself at its
next :func:`raise_if_interrupted` outside held work. The held count is per thread for that
reason: one thread's cleanup does not hold back another. A parallel backup's workers are
processes forked by the held main thread: each starts with :func:`release_forked` and then
acts on a signal as a sequential job does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class CutShort(Exception):
    """A script run during cleanup was ended by a second signal (see the module text)."""


class _State:
    def __init__(self) -> None:
        self.fired = False
        self.again = False  # a second signal came: scripts run in cleanup are cut short
        self.depth = 0  # nested interruptible() operations (a scheduler pass runs jobs)
        self._local = threading.local()

    @property
    def held(self) -> int:
        """The calling thread's depth of held work."""
        return int(getattr(self._local, "held", 0))

    @held.setter
    def held(self, value: int) -> None:
        self._local.held = value


_state = _State()


def _handler(_signum: int, _frame: FrameType | None) -> None:
    if _state.fired:
        _state.again = True
        return
    _state.fired = True
    if not _state.held:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Install the handlers for the duration of the operation (only the main thread can; in
    another one this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.depth:  # inside an outer operation: its handlers stay, and so does a signal
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    # a signal ignored by whoever started us stays ignored: ``nohup vzdump ...`` must outlive
    # the terminal's hangup, and a background job of a script Ctrl-C (GNU's convention)
    old = {
        sig: signal.signal(sig, _handler)
        for sig in INTERRUPTS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    _state.fired, _state.again, _state.held, _state.depth = False, False, 0, 1
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
        _state.fired, _state.again, _state.depth = False, False, 0  # a later one: uninterrupted


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Cleanup that must not be cut short: a signal now only marks the job interrupted."""
    _state.held += 1
    try:
        yield
    finally:
        _state.held -= 1


@contextlib.contextmanager
def step() -> Iterator[None]:
    """A step that must not be split from its record (a lock and the mark that it is ours, a
    volume and the list its undo reads): a signal during it is only noted, and acts right
    after it - unless an outer held block still holds it off."""
    with held():
        yield
    raise_if_interrupted()


def release_forked() -> None:
    """In a process just forked by a thread in held work (a parallel backup's worker): the
    forking thread's held work is not this process's, which acts on a signal at once, as a
    sequential job does; one that came meanwhile was noted and acts at the next check."""
    _state.held = 0


def holding() -> bool:
    """Whether the calling thread is in held work (:func:`held`, :func:`step`)."""
    return bool(_state.held)


def interrupted() -> bool:
    """Whether a signal arrived since the job started (also one noted during cleanup)."""
    return _state.fired


def raise_if_interrupted() -> None:
    """After held work: a signal that arrived meanwhile interrupts the operation now."""
    if _state.fired and not _state.held:
        raise KeyboardInterrupt


def communicate(
    proc: subprocess.Popen[str],
    poll: float = 0.2,
    *,
    timeout: float | None = None,
    stop_wait: float = 0.0,
) -> tuple[str, str]:
    """``proc.communicate()`` that a noted signal interrupts in any thread, not only in the main
    one: the child is killed and ``KeyboardInterrupt`` raised (as :func:`subprocess.run` does).
    A child started with ``start_new_session=True`` is killed with its whole process group
    (rsync forks helpers that would otherwise go on writing into a directory being removed).

    Past ``timeout`` seconds the child is stopped the same way and ``TimeoutExpired`` raised.
    A child that cleans up after itself on TERM (a ctkit command, fsck) is given ``stop_wait``
    seconds for it before the kill: killed at once, it left what it had made (a restore
    test's container) for the next run to find."""
    group = _leads_group(proc)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=poll)
                return out or "", err or ""
            except subprocess.TimeoutExpired:
                raise_if_interrupted()
                if deadline is not None and time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout or 0.0) from None
    except BaseException:
        try:
            if stop_wait:  # a signal meanwhile is only noted: the kill after it must come
                with held():
                    _term_and_wait(proc, group, stop_wait)
        finally:
            _kill_group(proc, group)
        raise


def stream_lines(
    proc: subprocess.Popen[bytes], line: Callable[[bytes], None], poll: float = 0.2,
    longest: int = 64 << 10,
) -> None:  # fmt: skip
    """Hand each line ``proc`` writes to its stdout to ``line`` as it comes (without its end;
    a line longer than ``longest`` in pieces of that size), until the output ends; interrupted
    and killed as :func:`communicate`. Nothing of the output is kept: a hook that printed
    100 MB took 600 MB when its output was collected whole."""
    import selectors

    assert proc.stdout is not None
    group = _leads_group(proc)
    fd, pending = proc.stdout.fileno(), b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                ready = sel.select(poll)
                raise_if_interrupted()  # also while it prints without a pause
                if _state.again:
                    raise CutShort
                if not ready:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for text in lines:
                    line(text)
                while len(pending) > longest:
                    line(pending[:longest])
                    pending = pending[longest:]
            if pending:
                line(pending)
    except BaseException:
        _kill_group(proc, group)
        raise


def _leads_group(proc: subprocess.Popen[Any]) -> bool:
    """Whether ``proc`` leads a process group of its own (``start_new_session``): asked before
    it is waited for, since a reaped child no longer says, and the helpers it left in its
    group lived on after an interrupt (a hook's ``sleep &``)."""
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def _term_and_wait(proc: subprocess.Popen[Any], group: bool, wait: float) -> None:
    """TERM ``proc`` (its group when it leads one) and read its output until it ends, for at
    most ``wait`` seconds (a child blocked on a full pipe would not end). The TERM is sent
    again every second (see :data:`shared.parentdeath.TERM_AGAIN`)."""
    from .parentdeath import TERM_AGAIN

    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=min(left, TERM_AGAIN))
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_group(proc: subprocess.Popen[Any], group: bool, wait: float = 5.0) -> None:
    if not group:
        proc.kill()
        proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:  # until the helpers it forked are gone too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
