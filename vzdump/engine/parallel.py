"""Parallel backups: up to ``--parallel N`` guests of one job at once (a ctkit addition).

Guests start in VMID order as workers free up. Each guest's backup is the same synchronous
:class:`~vzdump.engine.guest.GuestBackup` as in a sequential job, run in a worker thread that an
asyncio loop in the main thread hands out; the child processes (tar, compressors, rsync) stream
as they always do. What the workers share is made safe here:

* the console (the task log): one whole line per write, under a lock, each guest's lines
  prefixed ``CT <vmid>: ``; each guest still writes its own log file as it goes;
* ``/mnt/vzsnap<slot>``: one mount point per worker slot, so stop and snapshot mode never meet;
* ``--bwlimit``: one token bucket for all archive streams (the run's total); rsync in suspend
  mode gets an equal share per worker;
* signals: the main thread is held while it waits, so a signal is only noted; every worker raises
  it at its next log line or archive chunk outside held cleanup, cleans its guest up (thaw,
  restart, snapshot, ``.dat``, temp dir, lock) and returns; guests not started yet are reported
  as aborted, and the job ends with the signal's error once every worker is done.

The per-guest log files are written synchronously by the worker that owns them: a line is
written and flushed when it is logged, which is what ``tail -f`` and the log copy beside the
archive need; ``aiofiles`` would only move those small writes to yet another thread pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from shared import signals
from shared.archive.ratelimit import TokenBucket

from ..report import GuestResult
from .guest import GuestBackup, JobEnv
from .hooks import Hooks
from .log import JobLog


class Console:
    """The job's console, shared by the workers: whole lines, never interleaved."""

    def __init__(self, log: JobLog) -> None:
        self.log = log
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            if not self.log.console_gone:
                self.log._print(text)  # the job log's own console writer


class _ProgressLines(io.StringIO):
    """A text stream that hands each complete line to ``emit`` (never a terminal: no bars)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._part = ""

    def write(self, text: str) -> int:
        *lines, self._part = (self._part + text).split("\n")
        for line in lines:
            if line:
                self._emit(line)
        return len(text)

    def isatty(self) -> bool:
        return False


class GuestLog(JobLog):
    """One worker's guest log: its own file and lines; console lines prefixed ``CT <vmid>: ``.
    Every line logged outside held cleanup is a point where a noted signal interrupts it."""

    def __init__(self, console: Console, vmid: int) -> None:
        super().__init__(console.log.stream)
        self.console = console
        self.prefix = f"CT {vmid}: "
        self.progress_stream = _ProgressLines(lambda line: console.line(self.prefix + line))

    def _print(self, text: str) -> None:
        self.console.line(self.prefix + text)

    def _emit(self, level: str | None, message: str, console: bool = True) -> None:
        super()._emit(level, message, console)
        self.checkpoint()


def _sleep(seconds: float) -> None:
    """The shared bandwidth limit's wait, in slices: with several workers one chunk may have to
    wait seconds for its turn, and a signal must not."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
        signals.raise_if_interrupted()


def shared_bucket(kib_per_s: int) -> TokenBucket | None:
    """The run's one ``--bwlimit`` for all workers' archive streams."""
    if not kib_per_s:
        return None
    return TokenBucket(float(kib_per_s) * 1024, sleep=_sleep)


def _backup(env: JobEnv, vmid: int) -> GuestResult:
    try:
        return GuestBackup(env, vmid).run()
    finally:
        env.log.close()


async def _run_all(env: JobEnv, vmids: list[int], workers: int) -> list[GuestResult]:
    loop = asyncio.get_running_loop()
    console = Console(env.log)
    bucket = shared_bucket(env.opts.bwlimit)
    slots: asyncio.Queue[int] = asyncio.Queue()
    for slot in range(workers):
        slots.put_nowait(slot)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vzdump-worker") as pool:

        async def one(vmid: int) -> GuestResult:
            # the tasks wait for a slot in creation order: guests start in VMID order
            slot = await slots.get()
            try:
                if signals.interrupted():
                    return GuestResult.aborted(vmid)
                log = GuestLog(console, vmid)
                hooks = Hooks(env.hooks.script, log.info)
                hooks.env = dict(env.hooks.env)
                genv = dataclasses.replace(
                    env, log=log, hooks=hooks, slot=slot, workers=workers, bucket=bucket
                )
                return await loop.run_in_executor(pool, _backup, genv, vmid)
            finally:
                slots.put_nowait(slot)

        return list(await asyncio.gather(*(one(vmid) for vmid in vmids)))


def run_guests(env: JobEnv, vmids: list[int], workers: int) -> list[GuestResult]:
    """Back up ``vmids`` with up to ``workers`` at once; the results in VMID order. After a
    signal every started guest has cleaned up and the rest are reported as aborted; the caller
    checks :func:`shared.signals.interrupted`."""
    with signals.held():  # the main thread only waits: the workers act on a signal
        return asyncio.run(_run_all(env, vmids, workers))
