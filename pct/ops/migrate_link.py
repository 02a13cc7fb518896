"""The source's side of the wire: the control session and the two ways volumes travel.

btrfs volumes go as ``btrfs send`` streams of read-only snapshots (the second pass incremental
against the first); every other volume goes by rsync into the volume the target mounted. btrfs
streams are spliced through this process (moved between the pipes in the kernel, never copied
into it) so that sizes and rates can be logged and ``--bwlimit`` applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shared.archive.ratelimit import TokenBucket
from shared.childoutput import run_bounded
from shared.errors import CommandError, CtkitError
from shared.parentdeath import tied_to_parent
from shared.printable import printable
from shared.remote import ssh
from shared.remote.config import Remote
from shared.rsyncacl import XFS_ACL_FILTER
from shared.stallguard import StallGuard
from shared.storage.volid import is_volume_id
from shared.toolenv import tool_env

from .migrate_target import IDLE_TIMEOUT
from .target_info import greeting

CHUNK = 1024 * 1024
PING_INTERVAL = 60.0
MAX_REPLY = 1024 * 1024
# what ``recv-btrfs`` prints when it starts reading its stream, and once it is received and synced
READY, RECEIVED = b"ready", b"ok"


class Refused(CtkitError):
    """The remote answered a request with an error (it is still in control of its state)."""


@dataclass
class Transfer:
    nbytes: int
    seconds: float

    def describe(self) -> str:
        mib = self.nbytes / 1048576
        rate = mib / self.seconds if self.seconds > 0 else 0.0
        return f"{mib:.1f} MiB in {self.seconds:.1f} s ({rate:.1f} MiB/s)"


def unexpected(remote: Remote) -> CommandError:
    return CommandError(f"remote '{remote.name}': unexpected reply")


def volume_id(remote: Remote, reply: dict[str, Any]) -> str:
    """The volume ID in the target's answer to ``alloc``: a string of the volume ID form."""
    volid = reply.get("volid")
    if not isinstance(volid, str) or not is_volume_id(volid) or printable(volid) != volid:
        raise unexpected(remote)
    return volid


class Session:
    """``pct migrate-target session <vmid>`` on the remote, spoken to one JSON line at a time.

    Every answer comes within ``reply_timeout`` seconds, as long as the target waits for the
    next request before it rolls back: a remote that stops answering but keeps its connection
    open (a hung storage there, or a hostile host) fails the request instead of holding the
    container, locked and perhaps stopped, for ever."""

    def __init__(self, remote: Remote, vmid: int, reply_timeout: float = IDLE_TIMEOUT) -> None:
        self.remote = remote
        self.reply_timeout = reply_timeout
        self._pending = bytearray()  # what arrived of the next reply
        self.proc = subprocess.Popen(
            ssh.pct_argv(remote, ["migrate-target", "session", str(vmid)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # not in the terminal's process group: a Ctrl-C is this process's to act on (an
            # abort the target hears of, or a commit awaited), not a cut link; its end still
            # comes with this process's (the remote sees its input close)
            start_new_session=True,
        )
        try:
            self.hello = self._read()
            greeting(self.hello).check_compatible()  # before anything is asked of it
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pinger = threading.Thread(target=self._ping, daemon=True)
        self._pinger.start()

    def _ping(self) -> None:
        """Keep the session alive while a long copy runs (the target rolls back when idle)."""
        while not self._stop.wait(PING_INTERVAL):
            try:
                self.request("ping")
            except CtkitError:
                return  # the next real request reports the broken session

    def _line(self) -> bytes | None:
        """The next line from the remote; None at its end."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.reply_timeout
        while b"\n" not in self._pending:
            if len(self._pending) > MAX_REPLY:
                raise unexpected(self.remote)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise CommandError(
                    f"remote '{self.remote.name}': no answer within {self.reply_timeout:.0f} s"
                )
            data = os.read(fd, 65536)
            if not data:
                return None
            self._pending += data
        line, _sep, rest = bytes(self._pending).partition(b"\n")
        self._pending[:] = rest
        return line

    def _read(self) -> dict[str, Any]:
        line = self._line()
        if line is None:
            self.proc.wait()
            assert self.proc.stderr is not None
            text = self.proc.stderr.read(65536).decode("utf-8", "replace")
            err = [ln for ln in text.splitlines() if ln.strip()]
            reason = printable(err[-1]) if err else f"exit code {self.proc.returncode}"
            raise CommandError(
                f"migration session on remote '{self.remote.name}' failed - {reason}"
            )
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
            reply = None
        if not isinstance(reply, dict):
            raise unexpected(self.remote)
        if reply.get("ok") is not True:
            error = reply.get("error")
            text = printable(error) if isinstance(error, str) and error else "request failed"
            raise Refused(f"remote '{self.remote.name}': {text}")
        return reply

    def request(self, op: str, **data: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:  # one request in flight: the pinger and the migration share the line
            try:
                self.proc.stdin.write(json.dumps({"op": op, **data}).encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reply read below reports why
            return self._read()

    def close(self) -> None:
        """End the session; without a commit before, the remote rolls everything back."""
        self._stop.set()
        with self._lock:
            pass  # a ping in flight finishes first
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _pump(
    src: IO[bytes], dst: IO[bytes], bwlimit: int | None, moved_some: Callable[[], None]
) -> tuple[int, bool]:
    """Move everything from one pipe to the other, counting it: ``splice`` (no copy through
    this process) in pieces the rate limit allows; ``moved_some`` after each piece. Returns
    the bytes moved and whether the reader closed its end first: ``btrfs receive`` ends at
    the stream's own end command, which a send paced by the limit has not followed with its
    end of file yet (the count then is all the same)."""
    bucket = TokenBucket.from_kib(bwlimit)
    size = bucket.chunk_size(CHUNK) if bucket else CHUNK
    src_fd, dst_fd = src.fileno(), dst.fileno()
    for fd in (src_fd, dst_fd):
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)  # fewer, larger moves
    total = 0
    while True:
        try:
            moved = os.splice(src_fd, dst_fd, size)
        except BrokenPipeError:
            return total, True
        if moved == 0:
            return total, False
        moved_some()
        if bucket:
            bucket.consume(moved)
        total += moved


def _finish(procs: list[subprocess.Popen[bytes]], what: str) -> None:
    for proc in procs:
        proc.wait()
    for proc in procs:
        if proc.returncode != 0:
            err = proc.stderr.read(65536).decode("utf-8", "replace") if proc.stderr else ""
            lines = [ln for ln in err.splitlines() if ln.strip()]
            detail = f" - {printable(lines[-1])}" if lines else ""
            raise CommandError(f"{what} failed: exit code {proc.returncode}{detail}")


def open_receiver(remote: Remote, target: list[str]) -> subprocess.Popen[bytes]:
    """Start ``pct migrate-target recv-btrfs <target>`` on the remote, waiting for a stream.

    Opened long before its stream comes (all of them right after the volumes were allocated),
    so that neither a pass's transfer nor the downtime pays for the SSH handshake and the
    remote command's start-up."""
    return subprocess.Popen(
        ssh.pct_argv(remote, ["migrate-target", "recv-btrfs", *target]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # as the session's: ended by this process, not by a Ctrl-C
    )


def send_btrfs(
    send_argv: list[str], receiver: subprocess.Popen[bytes], bwlimit: int | None
) -> Transfer:
    """``btrfs send ...`` into a receiver made by :func:`open_receiver`.

    Done when the receiver says the stream is received and on disk (its ``ok`` line), not
    when its process and SSH connection have ended: their teardown is nobody's wait (the
    caller reaps the receiver later with :func:`reap`). Timed from the receiver's ``ready``
    line: its connection and start-up happened while the snapshots were taken."""
    what = f"sending '{send_argv[-1]}'"
    assert receiver.stdout is not None and receiver.stdin is not None
    # a receiver that stops reading (its host hung, or hostile) would hold the send for ever:
    # ended when nothing moved for the target's idle timeout, which ends the blocked splice
    guard = StallGuard(receiver.kill, IDLE_TIMEOUT)
    sender: subprocess.Popen[bytes] | None = None
    try:
        if _status_line(receiver, what) != READY:
            _finish([receiver], what)
            raise CommandError(f"{what} failed: the receiver did not start")
        start = time.monotonic()
        sender = subprocess.Popen(send_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert sender.stdout is not None
        with guard:
            nbytes, closed = _pump(sender.stdout, receiver.stdin, bwlimit, guard.progress)
        if closed:
            # a sender with more to write now fails on its pipe (and says so below); one
            # that had written its end exits 0, and the receiver's status line tells the rest
            sender.stdout.close()
    except BaseException:
        # (an interrupt too, also one while the receiver was still starting): no sender is
        # left holding the snapshot the abort removes
        if sender is not None:
            sender.kill()
            sender.wait()
        raise
    finally:
        # on every way out: the receiver sees its stream end, so that it and its connection
        # end when reaped, instead of waiting for data that never comes
        with contextlib.suppress(BrokenPipeError):
            receiver.stdin.close()
    if guard.fired:
        sender.kill()
        sender.wait()
        raise CommandError(f"{what} failed: nothing moved for {IDLE_TIMEOUT:.0f} s")
    _finish([sender], what)
    if _status_line(receiver, what) != RECEIVED:
        _finish([receiver], what)
        raise CommandError(f"{what} failed: the receiver did not confirm")
    return Transfer(nbytes, time.monotonic() - start)


def _status_line(receiver: subprocess.Popen[bytes], what: str) -> bytes:
    """The receiver's next status line (``ready``, ``ok``), read a byte at a time from its
    pipe (nothing of the next line is buffered away from the next wait), within the target's
    idle timeout; b"" when it ended."""
    assert receiver.stdout is not None
    fd = receiver.stdout.fileno()
    deadline = time.monotonic() + IDLE_TIMEOUT
    line = b""
    while len(line) < 64:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            receiver.kill()
            raise CommandError(f"{what} failed: no word from the receiver in {IDLE_TIMEOUT:.0f} s")
        byte = os.read(fd, 1)
        if byte in (b"", b"\n"):
            break
        line += byte
    return line.strip()


def reap(receiver: subprocess.Popen[bytes]) -> None:
    """Wait for a receiver that confirmed (or was closed) to end."""
    try:
        receiver.wait(timeout=30)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver.wait()


def close_receiver(receiver: subprocess.Popen[bytes]) -> None:
    """End a receiver that will not be used (it sees an empty stream and fails harmlessly)."""
    with contextlib.suppress(OSError):
        if receiver.stdin is not None:
            receiver.stdin.close()
    reap(receiver)


# mtimes to the nanosecond: a file rewritten within the second of the first pass, at the same
# size, is otherwise taken as unchanged by the final pass (stale data on the target)
RSYNC_OPTS = ["-aHAXS", XFS_ACL_FILTER, "--numeric-ids", "--delete", "--stats",
              "--one-file-system", "--modify-window=-1"]  # fmt: skip


def rsync(remote: Remote, source: Path, target: list[str], bwlimit: int | None) -> Transfer:
    """rsync ``source/`` into the volume the remote mounts for ``target`` (vmid, volid)."""
    start = time.monotonic()
    rsync_path = ssh.remote_command(remote, ["migrate-target", "rsync", *target, "--"])
    # killed with us: left running, it would copy on for as long as the data lasts, into a
    # volume the target's rollback wants to free
    argv = tied_to_parent(["rsync", *RSYNC_OPTS])
    # a remote that stops answering ends the copy, as one that stops asking ends the session
    argv.append(f"--timeout={int(IDLE_TIMEOUT)}")
    if bwlimit:
        argv.append(f"--bwlimit={bwlimit}")
    argv += ["-e", shlex.join(ssh.ssh_options(remote)), f"--rsync-path={rsync_path}"]
    host = f"[{remote.host}]" if ":" in remote.host else remote.host
    argv += [f"{source}/", f"{host}:/"]
    # the remote's messages come through rsync's stderr: only their end is kept
    code, raw_out, raw_err = run_bounded(
        argv, max_out=MAX_REPLY, err_tail=MAX_REPLY, env=tool_env()
    )
    out, err = raw_out.decode("utf-8", "replace"), raw_err.decode("utf-8", "replace")
    # 24: files vanished while copying - expected while the container runs
    if code not in (0, 24):
        lines = [ln for ln in err.splitlines() if ln.strip()]
        # the remote's own complaint comes before rsync's protocol error; rsync's own
        # diagnostic ("rsync: [receiver] ... failed: No space left on device") names the file
        # and the cause, where its last line only says "some files/attrs were not transferred"
        own = [ln for ln in lines if not ln.startswith("rsync")]
        lines = own or [ln for ln in lines if ln.startswith("rsync: ")] or lines
        detail = f" - {printable(lines[-1])}" if lines else ""
        raise CommandError(f"rsync of '{source}' failed: exit code {code}{detail}")
    sent = 0
    for line in out.splitlines():
        if line.startswith("Total bytes sent:"):
            sent = int(line.split(":")[1].strip().replace(",", "").split()[0])
    return Transfer(sent, time.monotonic() - start)
