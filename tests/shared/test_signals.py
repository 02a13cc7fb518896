"""INT, TERM, HUP and QUIT during a long operation: one interrupt, never inside held cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from shared import signals


@pytest.mark.parametrize("sig", signals.INTERRUPTS, ids=str)
def test_first_signal_interrupts_later_ones_are_ignored(sig: signal.Signals) -> None:
    with signals.interruptible():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            signals.raise_if_interrupted()  # (not reached when the handler raised)
        os.kill(os.getpid(), sig)  # ignored: cleanup after the first one must not be cut short
        assert signals.interrupted()
    assert not signals.interrupted()  # the next operation starts afresh
    assert signal.getsignal(sig) is not signals._handler


def test_a_signal_ignored_by_the_starter_stays_ignored() -> None:
    """``nohup`` ignores HUP, a script's background job INT: an operation keeps them ignored
    (GNU's convention) instead of taking a closed terminal for an interrupt."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.interruptible():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            signals.raise_if_interrupted()
            assert not signals.interrupted()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)  # the others still interrupt
                signals.raise_if_interrupted()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_signal_in_held_work_is_noted_and_raised_after_it() -> None:
    done = []
    with signals.interruptible():
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("held work completed")
        assert done and signals.interrupted()
        with pytest.raises(KeyboardInterrupt):
            signals.raise_if_interrupted()


def test_a_step_completes_and_the_signal_acts_right_after_it() -> None:
    done = []
    with signals.interruptible():
        with pytest.raises(KeyboardInterrupt):
            with signals.step():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("step")
            done.append("after")  # not reached: the step's end raised
        assert done == ["step"]
    with signals.interruptible():
        with signals.held():
            with signals.step():  # inside held cleanup the signal waits for the cleanup
                os.kill(os.getpid(), signal.SIGTERM)
            done.append("cleanup went on")
        assert done[-1] == "cleanup went on" and signals.interrupted()


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[object] = []

    def run() -> None:
        with signals.interruptible():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]


def test_workers_act_on_a_signal_the_held_main_thread_noted() -> None:
    """Work in other threads: the main thread waits held, so a signal is only noted; a worker's held
    cleanup is not cut short by it, and a worker waiting for a child kills it and raises."""
    outcome: dict[str, object] = {}
    in_cleanup, signalled = threading.Event(), threading.Event()

    def cleanup_worker() -> None:
        with signals.held():
            in_cleanup.set()
            signalled.wait(10)
            signals.raise_if_interrupted()  # held in this thread: nothing happens
            outcome["cleanup"] = "completed"

    def waiting_worker() -> None:
        # a child that forked a helper of its own (as rsync does): the whole group goes
        argv = ["sh", "-c", "sleep 30 & wait"]
        proc = subprocess.Popen(argv, text=True, start_new_session=True)
        started = time.monotonic()
        try:
            signals.communicate(proc)
        except KeyboardInterrupt:
            outcome["waited"] = time.monotonic() - started
            outcome["child"] = proc.poll()
            try:
                os.killpg(proc.pid, 0)
                outcome["group"] = "alive"
            except ProcessLookupError:
                outcome["group"] = "gone"

    with signals.interruptible(), signals.held():
        workers = [threading.Thread(target=cleanup_worker), threading.Thread(target=waiting_worker)]
        for worker in workers:
            worker.start()
        in_cleanup.wait(10)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)  # noted only: the main thread is held
        signalled.set()
        for worker in workers:
            worker.join(10)
        assert signals.interrupted()
    assert outcome["cleanup"] == "completed"
    assert isinstance(outcome["waited"], float) and outcome["waited"] < 5
    assert outcome["child"] == -signal.SIGKILL and outcome["group"] == "gone"


def test_a_signal_during_a_stopped_child_s_grace_does_not_spare_it_the_kill() -> None:
    """A child past its timeout is TERMed and given its grace; a signal then raised out of the
    wait: the kill after it was skipped, and a child deaf to TERM ran on, never reaped. The
    signal is noted, the kill comes, and the timeout is what is raised."""
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with signals.interruptible():
            timer.start()
            raised = ""
            try:
                signals.communicate(proc, timeout=0.5, stop_wait=3)
            except subprocess.TimeoutExpired:
                raised = "timeout"
            except KeyboardInterrupt:  # not out of the test run
                raised = "interrupt"
            assert raised == "timeout" and signals.interrupted()
        assert proc.returncode == -signal.SIGKILL
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
