"""The guard that ends a process group when the ctkit process that started it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.pct.conftest import running, wait_for

ROOT = Path(__file__).resolve().parents[2]

# A group leader that, as util-linux fsck does when a TERM comes before it waits, notes the TERM
# and passes nothing on: its child, a sleep, ends only when the group is TERMed as a whole.
DEAF_LEADER = """
import signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *_: None)
child = subprocess.Popen(["sleep", "600"])
print(child.pid, flush=True)
child.wait()
"""
# a leader that ignores TERM and never ends on its own
STUBBORN_LEADER = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(os.getpid(), flush=True)
time.sleep(600)
"""
# a leader that, as e2fsck before its MMP wait, notes a first TERM and then sleeps on: only a
# signal that comes during the sleep ends it
SLEEPS_ON_A_NOTED_TERM = """
import os, signal, time
noted = []
signal.signal(signal.SIGTERM, lambda *_: noted.append(1))
print(os.getpid(), flush=True)
while not noted:
    time.sleep(0.01)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
signal.sigtimedwait({signal.SIGTERM}, 60)
"""
# the ctkit process: starts the leader in a group of its own, guards it, says the pids and
# waits (to be killed), or, with 'done', leaves the guard at once and says what children it has
PARENT = """
import os, subprocess, sys, time
from shared.parentdeath import guarding_group
leader = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE,
                          text=True, process_group=0)
with guarding_group(leader.pid, float(sys.argv[2])):
    print(leader.pid, leader.stdout.readline().strip(), flush=True)
    if sys.argv[3] != "done":
        time.sleep(600)
leader.kill()
leader.wait()
print(open(f"/proc/self/task/{os.getpid()}/children").read().split(), flush=True)
"""


@contextmanager
def guarded(
    leader: str, grace: float, then: str = "wait"
) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """The ctkit stand-in running ``leader`` under a guard, and the pids it says (the leader's
    and the one the leader printed); every process of it is killed after."""
    argv = [sys.executable, "-c", PARENT, leader, str(grace), then]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    pgid = 0
    try:
        assert proc.stdout is not None
        pids = [int(word) for word in proc.stdout.readline().split()]
        pgid = pids[0]
        yield proc, pids
    finally:
        for group in (pgid, proc.pid):
            if group:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait()


def test_a_killed_parent_s_guard_terms_the_whole_group() -> None:
    """The leader kept the TERM (its parent-death signal, or the guard's) to itself: its child
    ran on after a kill -9 of the parent. The guard TERMs every process in the group."""
    with guarded(DEAF_LEADER, grace=30) as (proc, (leader, child)):
        assert running(child)
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_for(lambda: not running(child) and not running(leader), 5)


def test_what_ignores_the_term_is_killed_after_the_grace() -> None:
    with guarded(STUBBORN_LEADER, grace=1.5) as (proc, (leader, _same)):
        os.kill(proc.pid, signal.SIGKILL)
        start = time.monotonic()
        assert wait_for(lambda: not running(leader), 10)
        assert time.monotonic() - start > 1.0, "killed before its grace"


def test_a_guard_left_normally_is_gone_with_nothing_done() -> None:
    """Leaving the guarded block ends the guard (nothing left behind, nothing signalled)."""
    with guarded(STUBBORN_LEADER, grace=1, then="done") as (proc, _pids):
        # the rest through the same reader as the first line: both lines may come in one read,
        # and communicate() reads the pipe itself, past what the reader holds already
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None
        out = proc.stdout.read()
        assert out.strip() == "[]", out


def test_a_kill_of_the_parent_s_whole_group_leaves_the_guard_to_act() -> None:
    """A shell's ``kill -9 %1`` or ``timeout -s KILL`` kills the parent's process group: the
    guard was in it and died too, and the group it guarded ran on."""
    with guarded(DEAF_LEADER, grace=30) as (proc, (leader, child)):
        os.killpg(proc.pid, signal.SIGKILL)
        assert wait_for(lambda: not running(child) and not running(leader), 5)


def _guard_of(proc: subprocess.Popen[str], leader: int) -> int:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    (guard,) = (int(pid) for pid in children if int(pid) != leader)
    return guard


def test_a_term_to_the_guard_alone_is_no_death_of_its_parent() -> None:
    """The guard looks like its parent (the same command line): a TERM meant for it, or sent
    by mistake, ended the guarded group under a live parent."""
    with guarded(DEAF_LEADER, grace=30) as (proc, (leader, child)):
        guard = _guard_of(proc, leader)
        os.kill(guard, signal.SIGTERM)
        time.sleep(1.5)
        assert running(child) and running(leader) and running(guard)
        os.kill(proc.pid, signal.SIGKILL)  # the real death is still acted on
        assert wait_for(lambda: not running(child) and not running(leader), 5)


def test_a_term_noted_before_a_sleep_is_followed_by_another() -> None:
    """e2fsck notes a TERM that comes before its MMP wait and sleeps its 11 s on: a checker
    killed in that moment outlived pct by that long. The guard TERMs the group every second
    until it is gone."""
    with guarded(SLEEPS_ON_A_NOTED_TERM, grace=30) as (proc, (leader, _same)):
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_for(lambda: not running(leader), 5)
