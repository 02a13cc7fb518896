"""A child's output read with bounds (shared.childoutput)."""

from __future__ import annotations

import subprocess
import time

import pytest

from shared.childoutput import read_bounded, run_bounded


def child(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_endless_messages_keep_only_their_end_and_the_output_is_whole() -> None:
    proc = child("head -c 20000000 /dev/zero | tr '\\0' x >&2; echo last >&2; echo done")
    with proc:
        out, err = read_bounded(proc, max_out=1024, err_tail=100)
    assert out == b"done\n" and len(err) == 100 and err.endswith(b"xxlast\n")
    assert proc.returncode == 0


def test_output_past_the_bound_is_not_read_on() -> None:
    proc = child("exec cat /dev/zero")
    with proc:
        out, _err = read_bounded(proc, max_out=1 << 20, err_tail=100)
        assert proc.poll() is None  # still writing: the caller cuts it off
        proc.kill()
    assert (1 << 20) < len(out) <= (1 << 20) + 65536


def test_a_child_that_says_nothing_is_given_up_at_the_deadline() -> None:
    proc = child("exec sleep 30")
    started = time.monotonic()
    with proc, pytest.raises(subprocess.TimeoutExpired):
        try:
            read_bounded(proc, max_out=10, err_tail=10, deadline=time.monotonic() + 0.5)
        finally:
            proc.kill()
    assert 0.4 < time.monotonic() - started < 10


def test_run_bounded_cuts_off_a_child_that_prints_on_and_waits_for_one_that_ended() -> None:
    code, out, _err = run_bounded(["cat", "/dev/zero"], max_out=1 << 20, err_tail=100)
    assert code == -9 and len(out) > (1 << 20)
    # a child that closed its pipes a moment before it exits keeps its own status
    code, out, err = run_bounded(
        ["sh", "-c", "echo out; echo err >&2; exec >&- 2>&-; sleep 0.3; exit 3"],
        max_out=100, err_tail=100,
    )  # fmt: skip
    assert (code, out, err) == (3, b"out\n", b"err\n")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded(["sleep", "30"], max_out=10, err_tail=10, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 10
