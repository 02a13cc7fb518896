"""Parallel backups: up to ``--parallel N`` guests of one job at once (a ctkit addition).

Guests start in VMID order as workers free up. Each worker is a process forked from vzdump
that backs up guest after guest with the same synchronous
:class:`~vzdump.engine.guest.GuestBackup` as a sequential job, keeping its imports and caches
between guests; so the guests' own Python work (configs, locks, logs, the mode's steps) runs on
every core instead of taking turns under one interpreter lock. The child processes (tar,
compressors, rsync) stream as they always do. An asyncio loop in the main process hands each
free worker the next guest, relays each worker's lines and collects its results. What the workers
share is made safe here:

* the console (the task log): a worker sends its lines through a pipe of its own; the main
  process prints each whole line, prefixed ``CT <vmid>: ``; each worker writes its guest's own
  log file as it goes (a line is written and flushed when it is logged, which is what
  ``tail -f`` and the log copy beside the archive need);
* ``/mnt/vzsnap<slot>``: one mount point per worker slot, so stop and snapshot mode never meet;
* ``--bwlimit``: one token bucket in shared memory for all archive streams (the run's total);
  rsync in suspend mode gets an equal share per worker;
* signals: the main process waits held, so a signal is only noted there; it passes it on as
  SIGTERM to every worker, which acts on it as a sequential job does (cleans its guest up:
  thaw, restart, snapshot, ``.dat``, temp dir, lock) and reports the guest interrupted. Guests
  not started yet are reported as aborted, and the job ends with the signal's error once every
  worker is done. A worker whose main process dies (``kill -9``) gets SIGTERM from the kernel
  and cleans up in the same way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from shared import parentdeath, paths, signals
from shared.archive.ratelimit import TokenBucket
from shared.errors import Interrupted
from shared.runtime.mounts import unmount_below

from ..report import GuestResult
from .guest import GuestBackup, JobEnv
from .hooks import Hooks
from .log import JobLog

if TYPE_CHECKING:
    import asyncio

# A worker's last line: its result as JSON. Log lines are printable: none holds a NUL.
RESULT = "\0result "
FAILED = "\0failed "  # a worker's own failure (a bug): its exception, before it ends
SIGNAL_POLL = 0.05  # seconds between the main process's looks for a noted signal
READ_SIZE = 1 << 16
READS_A_TURN = 16  # chunks read from a worker before the event loop has its turn again


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
    """A worker's log: its guest's own file, and console lines sent to the main process."""

    def __init__(self, fd: int) -> None:
        super().__init__(io.StringIO())  # never printed to: console lines go through ``fd``
        self.fd = fd
        self.progress_stream = _ProgressLines(self._print)

    def _print(self, text: str) -> None:
        if self.console_gone:
            return
        data = memoryview(f"{text}\n".encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:  # the main process is gone: the guest's own log file still has it all
            self.console_gone = True


def _worker(env: JobEnv, commands: int, out: int, parent: int) -> NoReturn:  # pragma: no cover
    """A worker process: backs up each guest the main process names on ``commands`` (one VMID
    a line), one after another as a sequential job does, until that pipe ends. Each result goes
    back as the guest's last line. It never returns into the main process's code."""
    code = 1
    try:
        parentdeath.die_with(parent, signal.SIGTERM)  # then it cleans up, as after --stop
        signals.release_forked()
        gone = False
        while (vmid := _next_vmid(commands)) is not None:
            log = GuestLog(out)
            log.console_gone = gone
            hooks = Hooks(env.hooks.script, log.info)
            hooks.env = dict(env.hooks.env)
            genv = dataclasses.replace(env, log=log, hooks=hooks)
            try:
                result = GuestBackup(genv, vmid).run()
            finally:
                log.close()
            # a signal of its own (the main process passes one on as SIGTERM too) ends it
            # once its guest is cleaned up: acted on, it would end each next guest at once
            retire = signals.interrupted()
            with signals.held():
                payload = {"result": dataclasses.asdict(result), "reclaim": sorted(genv.reclaim),
                           "retire": retire}  # fmt: skip
                log._print(RESULT + json.dumps(payload))
            gone = log.console_gone
            if retire:
                break
        code = 0
    except Exception as err:  # a signal's end (KeyboardInterrupt) is told by the main process
        _failed(out, err)
    finally:
        os._exit(code)


def _failed(out: int, err: Exception) -> None:  # pragma: no cover - runs in a worker
    """A worker ended by an exception of its own (not a guest's error: those are results):
    its traceback on vzdump's stderr, and the exception for the guest's error line."""
    import traceback

    with contextlib.suppress(Exception):
        traceback.print_exception(err)
        sys.stderr.flush()
    line = f"{FAILED}{type(err).__name__}: {err}".replace("\n", " ")
    with contextlib.suppress(OSError):
        os.write(out, f"{line}\n".encode("utf-8", "backslashreplace"))


def _next_vmid(fd: int) -> int | None:  # pragma: no cover - runs in a worker
    """The next VMID the main process sends; None when it sends no more."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 32)
        if not chunk:
            return None
        line += chunk
    return int(line)


class _Worker:
    """A worker process as the main process sees it: commands in, lines and results out."""

    def __init__(self, env: JobEnv, pool: _Pool) -> None:
        command_r, self.commands = os.pipe()
        self.out, out_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the worker
            # the other workers' pipe ends: held here, one would never see its commands end
            for fd in (self.commands, self.out, *pool.fds()):
                os.close(fd)
            _worker(env, command_r, out_w, parent)
        os.close(command_r)
        os.close(out_w)
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None  # once it has ended
        self.closed = False
        self.first: int | None = None  # the guest it was sent before the event loop ran
        self.retiring = False  # it ends after its guest: the slot's next guest needs another
        self.result: asyncio.Future[str | None] | None = None
        self.line: Callable[[str], None] = lambda _text: None
        self.part = bytearray()
        self.failure: str | None = None  # what ended it, when it says (see _failed)
        self.loop: asyncio.AbstractEventLoop
        self.ended: asyncio.Future[None]

    def send(self, vmid: int) -> None:
        with contextlib.suppress(BrokenPipeError):  # it has just ended: _exited settles it
            os.write(self.commands, f"{vmid}\n".encode())

    def attach(self) -> None:
        """Follow it from the running event loop."""
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.ended = self.loop.create_future()
        os.set_blocking(self.out, False)
        self.loop.add_reader(self.out, self._read)
        self.loop.add_reader(self.pidfd, self._exited)  # ready once the process has ended

    async def backup(self, vmid: int, line: Callable[[str], None]) -> str | None:
        """Have it back up ``vmid`` (unless it was sent first), ``line`` getting the guest's
        console lines; the result line (None if the worker ended without one)."""
        self.line = line
        self.result = self.loop.create_future()
        if self.first == vmid:
            self.first = None
        elif self.ended.done():
            return None
        else:
            self.send(vmid)
        return await self.result

    async def close(self) -> None:
        """No more guests: it ends once its guest, if any, is done."""
        if not self.closed:
            self.closed = True
            os.close(self.commands)
        await self.ended

    def _read(self, *, drain: bool = False) -> None:
        """Its lines so far; a few chunks a turn unless ``drain``: a worker writing fast (a
        hook's output) kept the event loop, and a signal waited for it."""
        for _ in itertools.count() if drain else range(READS_A_TURN):
            try:
                chunk = os.read(self.out, READ_SIZE)
            except BlockingIOError:
                return
            if not chunk:
                self.loop.remove_reader(self.out)
                return
            end = chunk.rfind(b"\n")
            if end < 0:  # a long line (its result) grows: split once it is whole, not per chunk
                self.part += chunk
                continue
            whole = bytes(self.part) + chunk[:end] if self.part else chunk[:end]
            self.part[:] = chunk[end + 1 :]
            for raw in whole.split(b"\n"):
                self._line(raw.decode("utf-8", "backslashreplace"))

    def _line(self, text: str) -> None:
        if text.startswith(RESULT):
            self._settle(text[len(RESULT) :])
        elif text.startswith(FAILED):
            self.failure = text[len(FAILED) :]
        else:
            self.line(text)

    def _exited(self) -> None:
        self.loop.remove_reader(self.pidfd)
        # what it wrote before it ended, not up to the pipe's end: a helper it left behind
        # may still hold the pipe open
        self._read(drain=True)
        self.loop.remove_reader(self.out)
        os.close(self.out)
        _, self.status = os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        self._settle(None)
        self.ended.set_result(None)

    def _settle(self, payload: str | None) -> None:
        if self.result is not None and not self.result.done():
            self.result.set_result(payload)


class _Pool:
    """The job's worker processes; passes a signal the main process noted on to each once."""

    def __init__(self, env: JobEnv, size: int) -> None:
        self.env = env
        self.size = size
        # the run's one --bwlimit, shared by all workers' archive streams
        self.bucket = TokenBucket.from_kib(env.opts.bwlimit, shared=True)
        self.workers: list[_Worker] = []
        self.told: set[int] = set()

    def start(self, slot: int, *, replacing: _Worker | None = None) -> _Worker:
        if replacing is not None and replacing.status is not None and replacing.status != 0:
            # one killed on its own left its guest's volumes mounted at the slot's
            # /mnt/vzsnap<slot> (in the job's mount namespace, this process's too): its next
            # worker needs it empty. The guest itself is the next command's to recover.
            for problem in unmount_below(paths.vzsnap_mount(slot)):
                self.env.log.warn(problem)
        genv = dataclasses.replace(self.env, slot=slot, workers=self.size, bucket=self.bucket)
        worker = _Worker(genv, self)
        self.workers.append(worker)
        self.pass_on_signal()  # one noted while it was forked
        return worker

    def fds(self) -> list[int]:
        """The main process's ends of the running workers' pipes."""
        fds = []
        for worker in self.workers:
            if worker.status is None:
                fds += [worker.out] if worker.closed else [worker.out, worker.commands]
        return fds

    def pass_on_signal(self) -> None:
        if not signals.interrupted():
            return
        for worker in self.workers:
            if worker.pid not in self.told and worker.status is None:
                self.told.add(worker.pid)
                with contextlib.suppress(ProcessLookupError):  # it has just ended
                    signal.pidfd_send_signal(worker.pidfd, signal.SIGTERM)

    async def watch(self) -> None:
        import asyncio

        while True:
            self.pass_on_signal()
            await asyncio.sleep(SIGNAL_POLL)


def _lost(vmid: int, started: float, status: int, failure: str | None) -> GuestResult:
    """A guest whose worker ended without its result (killed on its own, say, or by a bug:
    ``failure`` is then its exception)."""
    if signals.interrupted():
        error = Interrupted().message
    elif failure is not None:
        error = f"backup worker failed: {failure}"
    elif os.WIFSIGNALED(status):
        error = f"backup worker killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        error = f"backup worker ended with exit code {os.waitstatus_to_exitcode(status)}"
    return GuestResult(vmid=vmid, name=f"CT{vmid}", status="err",
                       seconds=time.time() - started, error=error, started=started,
                       finished=time.time())  # fmt: skip


async def _guest(env: JobEnv, worker: _Worker, vmid: int) -> GuestResult:
    """``vmid`` backed up by ``worker``, its lines on the console as they come."""
    prefix = f"CT {vmid}: "
    started = time.time()
    payload = await worker.backup(vmid, lambda text: _console(env.log, prefix + text))
    if payload is None:  # only once it has ended and been reaped
        assert worker.status is not None
        lost = _lost(vmid, started, worker.status, worker.failure)
        _console(env.log, f"{prefix}ERROR: Backup of VM {vmid} failed - {lost.error}")
        return lost
    data = json.loads(payload)
    env.reclaim.update(data["reclaim"])
    worker.retiring = bool(data.get("retire"))
    return GuestResult(**data["result"])


def _console(log: JobLog, text: str) -> None:
    if not log.console_gone:
        log._print(text)  # the job log's own console writer


async def _run_all(
    pool: _Pool, todo: collections.deque[int], started: list[_Worker]
) -> dict[int, GuestResult]:
    import asyncio

    results: dict[int, GuestResult] = {}

    async def slot(number: int, worker: _Worker) -> None:
        # each slot takes the next guest when it is free: guests start in VMID order
        worker.attach()
        try:
            while True:
                vmid = worker.first
                if vmid is None:
                    if not todo or signals.interrupted():
                        break
                    if worker.ended.done() or worker.retiring:  # killed or signalled on its
                        await worker.close()  # own: another for the next guest
                        worker = pool.start(number, replacing=worker)
                        worker.attach()
                    vmid = todo.popleft()
                results[vmid] = await _guest(pool.env, worker, vmid)
        finally:
            await worker.close()

    watch = asyncio.create_task(pool.watch())
    try:
        await asyncio.gather(*(slot(n, w) for n, w in enumerate(started)))
    finally:
        watch.cancel()
    return results


def run_guests(env: JobEnv, vmids: list[int], workers: int) -> list[GuestResult]:
    """Back up ``vmids`` with up to ``workers`` at once; the results in VMID order. After a
    signal every started guest has cleaned up and the rest are reported as aborted; the caller
    checks :func:`shared.signals.interrupted`."""
    with signals.held():  # the main process only waits: the workers act on a signal
        pool = _Pool(env, workers)
        todo = collections.deque(vmids)
        started = []
        for slot in range(workers):
            worker = pool.start(slot)
            if todo and not signals.interrupted():
                worker.first = todo.popleft()
                worker.send(worker.first)
            started.append(worker)
        import asyncio  # imported while the first guests are under way

        results = asyncio.run(_run_all(pool, todo, started))
    return [results.get(vmid) or GuestResult.aborted(vmid) for vmid in vmids]
