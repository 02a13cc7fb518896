"""A child's output read with bounds: what another machine sends through it (a remote command
over SSH, an rsync server's messages) can be endless, and is never gathered whole."""

from __future__ import annotations

import os
import selectors
import subprocess
import time


def read_bounded(
    proc: subprocess.Popen[bytes], *, max_out: int, err_tail: int, deadline: float | None = None
) -> tuple[bytes, bytes]:
    """The child's stdout, up to one byte past ``max_out`` (more is not read: the caller
    refuses it), and the last ``err_tail`` bytes of its stderr, once both ended;
    TimeoutExpired once ``deadline`` (a ``time.monotonic()`` value) passed."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _events in sel.select(left):
                data = os.read(key.fd, 65536)
                buf: bytearray = key.data
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                buf += data
                if buf is err:
                    del buf[:-err_tail]
                elif len(buf) > max_out:
                    return bytes(buf), bytes(err)
    return bytes(out), bytes(err)


def run_bounded(
    argv: list[str],
    *,
    max_out: int,
    err_tail: int,
    deadline: float | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (stdin empty) and read its output as :func:`read_bounded` does; returns
    its exit status, stdout and stderr's end. A child that prints past ``max_out`` is cut off
    (killed; its stdout is then longer than ``max_out``); one still running at ``deadline``,
    or when this process is interrupted, is killed before the exception goes on. A child that
    closed its pipes is waited for, never killed on its way out."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    with proc:  # waits for it on the way out
        try:
            out, err = read_bounded(proc, max_out=max_out, err_tail=err_tail, deadline=deadline)
        except BaseException:
            proc.kill()
            raise
        if len(out) > max_out:
            proc.kill()  # it would print on
    return proc.returncode, out, err
