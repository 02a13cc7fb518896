"""Putting one small file into, or removing one from, a directory over SFTP, by the command
restic itself uses for an ``sftp:`` repository (the storage's ``sftp-command``, else ``ssh
host [-p port] [-l user] -s sftp``).

Only what that needs of SFTP version 3 (draft-ietf-secsh-filexfer-02): INIT, OPEN with
CREAT|EXCL, WRITE, CLOSE, RENAME (which never replaces a file) and REMOVE. The file is written
whole under a temporary name and then renamed, as restic's own sftp backend does. The server
is outside: every answer is bounded in size and in time.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_WRITE = 1, 2, 3, 4, 6
FXP_REMOVE, FXP_RENAME, FXP_STATUS, FXP_HANDLE = 13, 18, 101, 102
FXF_WRITE, FXF_CREAT, FXF_EXCL = 0x02, 0x08, 0x20
ATTR_PERMISSIONS = 0x04
MAX_PACKET = 256 << 10
TIMEOUT = 60.0


class SftpError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """Where an ``sftp:`` repository is: how to reach its server, and its directory there."""

    argv: list[str]
    directory: str


def target(repository: str, command: str | None) -> Target | None:
    """restic's two forms, ``sftp:[user@]host:dir`` and ``sftp://[user@]host[:port]/dir``
    (``//dir`` absolute); None for anything else."""
    user = port = ""
    if repository.startswith("sftp://"):
        url = urlsplit(repository)
        try:
            port = str(url.port or "")
        except ValueError:  # not a number, or out of range
            return None
        host, user = url.hostname or "", url.username or ""
        directory = url.path[1:]
    elif repository.startswith("sftp:"):
        where, sep, directory = repository[5:].partition(":")
        user, at, host = where.rpartition("@")
        if not sep or not at:
            user, host = "", where
    else:
        return None
    directory = os.path.normpath(directory) if directory else ""
    # a host that begins with a dash would be an option of ssh (-oProxyCommand=...)
    if not host or host.startswith("-") or not directory or directory.startswith("~"):
        return None
    if command:
        try:
            argv = shlex.split(command)
        except ValueError:
            return None
        return Target(argv, directory) if argv else None
    argv = ["ssh", host, *(["-p", port] if port else []), *(["-l", user] if user else [])]
    return Target([*argv, "-s", "sftp"], directory)


class Session:
    """One SFTP session over a started subsystem command."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], timeout: float = TIMEOUT):
        self.deadline = time.monotonic() + timeout
        self.proc = subprocess.Popen(
            list(argv), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True,  # no terminal to ask a password on
        )  # fmt: skip
        self.next_id = 0
        try:
            self._send(FXP_INIT, struct.pack(">I", 3), with_id=False)
            kind, _ = self._receive()
            if kind != FXP_VERSION:
                raise SftpError("not an SFTP server")
        except BaseException:
            self.close()  # the caller gets no session to close: the command must not stay
            raise

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _send(self, kind: int, payload: bytes, *, with_id: bool = True) -> int:
        ident = self.next_id
        self.next_id += 1
        body = bytes([kind]) + (struct.pack(">I", ident) if with_id else b"") + payload
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(struct.pack(">I", len(body)) + body)
            self.proc.stdin.flush()
        except OSError:
            raise SftpError("the connection ended") from None
        return ident

    def _read(self, size: int) -> bytes:
        assert self.proc.stdout is not None
        fd, out = self.proc.stdout.fileno(), b""
        while len(out) < size:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SftpError("no answer in time")
            chunk = os.read(fd, size - len(out))
            if not chunk:
                raise SftpError("the connection ended")
            out += chunk
        return out

    def _receive(self) -> tuple[int, bytes]:
        (length,) = struct.unpack(">I", self._read(4))
        if not 1 <= length <= MAX_PACKET:
            raise SftpError("a packet of a wrong size")
        body = self._read(length)
        return body[0], body[1:]

    def _call(self, kind: int, payload: bytes) -> tuple[int, bytes]:
        ident = self._send(kind, payload)
        reply, body = self._receive()
        if len(body) < 4 or struct.unpack(">I", body[:4])[0] != ident:
            raise SftpError("an answer to another request")
        return reply, body[4:]

    def _ok(self, kind: int, payload: bytes, what: str) -> None:
        reply, body = self._call(kind, payload)
        if reply != FXP_STATUS or len(body) < 4 or struct.unpack(">I", body[:4])[0] != 0:
            raise SftpError(f"{what} refused")

    def put(self, path: str, data: bytes, mode: int = 0o400) -> None:
        """``data`` as a new file ``path`` (never replacing one)."""
        tmp = f"{path}-ctkit-temp-{os.urandom(8).hex()}"
        attrs = struct.pack(">II", ATTR_PERMISSIONS, mode)
        reply, body = self._call(
            FXP_OPEN, _string(tmp) + struct.pack(">I", FXF_WRITE | FXF_CREAT | FXF_EXCL) + attrs
        )
        if reply != FXP_HANDLE or len(body) < 4:
            raise SftpError("creating the file refused")
        handle = body[: 4 + struct.unpack(">I", body[:4])[0]]
        try:
            try:
                self._ok(FXP_WRITE, handle + struct.pack(">Q", 0) + _string(data), "writing")
            finally:
                self._ok(FXP_CLOSE, handle, "closing")
            self._ok(FXP_RENAME, _string(tmp) + _string(path), "renaming")
        except SftpError:
            with contextlib.suppress(SftpError):
                self.remove(tmp)
            raise

    def remove(self, path: str) -> None:
        self._ok(FXP_REMOVE, _string(path), "removing")


def _string(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw
