"""A vzdump job: options, target, the node lock, guests one after another, job hooks,
notification (spec vzdump §1, §6, §7)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from shared import atomic, paths, pools, syscalls
from shared.ctconfig import store
from shared.errors import (
    ConfigError,
    CtkitError,
    Interrupted,
    JobError,
    OutputClosed,
)
from shared.formats import vzdumpconf
from shared.locks import flock
from shared.regularfile import UnreadableFile, read_whole
from shared.runtime.namespace import private_mounts
from shared.signals import held, interrupted, interruptible
from shared.storage.api import backup_dir, backup_storage, get_storage, reclaim_space
from shared.storage.resticplugin import ResticStorage

from ..options import OPTIONS, BackupOptions, check_params, job_header, merge_options
from ..report import GuestResult, JobResult
from ..upid import lives, make_upid, named_process
from .guest import GuestBackup, JobEnv
from .hooks import Hooks, check_script
from .log import JobLog

IGNORED = ("performance", "fleecing", "pbs-change-detection-mode")
MAX_PID_FILE = 4096  # one UPID
STOP_WAIT = 15.0  # --stop: how long the running vzdump may take to clean up and exit
STOP_AGAIN = 5.0  # --stop: a second TERM after this long cuts short a hook its cleanup runs


def stop_running(timeout: float = STOP_WAIT) -> None:
    """``--stop``: SIGTERM the vzdump whose UPID is in the pid file and wait for it to exit;
    a second TERM after :data:`STOP_AGAIN` seconds ends a hook its cleanup waits for (one that
    hung held a stopped container down and locked, see :mod:`shared.signals`).

    The process start time in the UPID guards against a reused PID; a stale file is ignored.
    """
    try:
        upid = read_whole(paths.vzdump_pid(), MAX_PID_FILE).decode(errors="replace").strip()
    except (OSError, UnreadableFile):  # none, or no file of ours (a FIFO would hold us)
        return
    named = named_process(upid)
    if named is None or not lives(*named):
        return
    pid, pstart = named
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    again = True
    while lives(pid, pstart):
        waited = time.monotonic() - started
        if waited > timeout:
            raise CtkitError(f"stopping backup process {pid} failed")
        if again and waited > STOP_AGAIN:
            again = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)


def ionice(level: int) -> None:
    """The run's I/O priority (``ionice -c 2 -n <level> -p <pid>``, ``-c 3`` for 8), best
    effort as in Proxmox: a kernel that has no such call changes nothing."""
    with contextlib.suppress(OSError):
        syscalls.ioprio_set(level)


def effective_options(params: Mapping[str, Any], log: JobLog) -> BackupOptions:
    conf = vzdumpconf.read(OPTIONS, paths.vzdump_conf())
    for warning in conf.warnings:
        log.warn(warning)
    if "mailto" in conf.invalid and params.get("mailto") is None:
        # ignoring it, as other bad defaults are, would silently mail no one
        raise ConfigError(f"mailto in '{vzdumpconf.DISPLAY_NAME}': {conf.invalid['mailto']}")

    def storage_prune(sid: str) -> Mapping[str, Any] | None:
        # the storage keeps the option as written; its property parses and normalises it. One
        # that storage.cfg has but cannot read fails the job (ConfigError), as a bad jobs.cfg
        # line does: any fallback would prune by a retention the user did not choose
        try:
            store = get_storage(sid)
        except CtkitError:
            return None  # the target's own check says what is wrong with it
        return store.prune_backups

    opts = BackupOptions.from_values(merge_options(params, conf.values, storage_prune))
    # relative paths are the caller's working directory's, made absolute once, here: tar's
    # second --directory resolved a relative one against the first (suspend mode failed),
    # and a bare hook script name was looked up on PATH
    absolute = {
        k: os.path.abspath(v) for k in ("dumpdir", "tmpdir", "script") if (v := getattr(opts, k))
    }
    return dataclasses.replace(opts, **absolute)


def resolve_target(opts: BackupOptions) -> tuple[str | None, Path]:
    """(storage id or None, dump directory), with Proxmox's errors."""
    if opts.dumpdir is not None:
        # an empty one is no directory (Path('') would be the working directory)
        path = Path(opts.dumpdir)
        if not opts.dumpdir or not os.path.isdir(path):  # Path.is_dir raised on a long name
            raise ConfigError(f"dumpdir '{path if opts.dumpdir else ''}' does not exist")
        return None, path
    sid = str(opts.storage)
    # the prefixes of §7; the error keeps its class (and so its exit code)
    try:
        backup_storage(sid)
    except CtkitError as err:
        err.message = f"could not get storage information for '{sid}': {err.message}"
        raise
    try:
        return sid, backup_dir(sid)
    except CtkitError as err:
        err.message = f"could not activate storage '{sid}': {err.message}"
        raise


def select_guests(opts: BackupOptions, warn: Callable[[str], None] | None = None) -> list[int]:
    if opts.pool:
        # as Proxmox: the pool's members that are guests of this host
        local = set(store.list_vmids())
        return [v for v in pools.pool_members(opts.pool, warn) if v in local]
    if opts.all:
        exclude = set(opts.exclude)
        return [v for v in store.list_vmids() if v not in exclude]
    return sorted(set(opts.vmid))


class Job:
    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        stdout: IO[bytes] | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.params = check_params(params)
        if self.params.get("pool"):
            pools.pool_members(str(self.params["pool"]))  # a missing pool fails before the task
        self.log = JobLog(stream)
        self.error: CtkitError | None = None
        self.stdout = stdout
        self.result = JobResult(
            self.params.get("job-id"),
            job_header(self.params).split(": ", 1)[-1],
            time.time(),
            time.time(),
            [],
            [],
        )

    def run(self) -> JobResult:
        if self.params.get("node") and self.params["node"] != paths.node_name():
            return self.result  # another node's job: nothing to do, no task, no log (§1.1)
        self.log.info(job_header(self.params))
        # without vzdump.conf and storage (their merge failed), the notification still goes out
        opts = BackupOptions.from_values(self.params)
        try:
            opts = effective_options(self.params, self.log)
            self._note_ignored()
            hooks = Hooks(opts.script, self.log.info)
            if opts.script:
                check_script(opts.script)
            if opts.dumpdir:
                hooks.env["DUMPDIR"] = opts.dumpdir
            if opts.storage:
                hooks.env["STOREID"] = opts.storage
            hooks.run("job-init")
            storage, dumpdir = resolve_target(opts)
            if opts.tmpdir and not os.path.isdir(opts.tmpdir):
                raise ConfigError(f"tmpdir '{opts.tmpdir}' does not exist")
            hooks.env.update({"DUMPDIR": str(dumpdir), **({"STOREID": storage} if storage else {})})
            with self._node_lock(opts.lockwait), interruptible():
                try:
                    self._guests(opts, storage, dumpdir, hooks)
                except KeyboardInterrupt:
                    raise self._job_abort(hooks, Interrupted()) from None
                except CtkitError as err:
                    raise self._job_abort(hooks, err) from None
        except CtkitError as err:
            self.error = err
            self.result.error = str(err)
            if isinstance(err, OutputClosed):
                self.log.info(f"Backup job stopped - {err}")
            else:
                self.log.error(f"Backup job failed - {err}")
        return self._done(opts)

    def _job_abort(self, hooks: Hooks, err: CtkitError) -> CtkitError:
        """The job-level flow died (job-start, job-end, a signal): run ``job-abort``; its own
        failure is appended to the error (§4.6). It is cleanup: the signal that ended the job
        ended the hook too (within 0.2 s), and the job's error line and its notification were
        lost with it."""
        try:
            with held():
                hooks.run("job-abort")
        except CtkitError as hook_err:
            err.message = f"{err.message}\n{hook_err}"
        return err

    def _note_ignored(self) -> None:
        for key in IGNORED:
            if key in self.params:
                self.log.info(
                    f"option '{key}' only concerns VMs or Proxmox Backup Server - ignored"
                )

    @contextlib.contextmanager
    def _node_lock(self, lockwait: int) -> Iterator[None]:
        lock = paths.vzdump_lock()
        message = f"can't acquire lock '{lock}' - got timeout"
        if lockwait == 0:
            message = f"can't acquire lock '{lock}' (wait = 0)"
        waited: list[bool] = []

        def on_wait() -> None:
            waited.append(True)
            self.log.info("trying to get global lock - waiting...")

        with flock(lock, lockwait * 60, timeout_message=message, on_wait=on_wait):
            if waited:
                self.log.info("got global lock")
            # a UPID (with the process start time) so that --stop never hits a reused PID
            vmids = self.params.get("vmid") or []
            task_id = self.params.get("job-id") or (str(vmids[0]) if len(vmids) == 1 else "")
            upid = make_upid(os.getpid(), task_id, int(time.time()))
            # a full or read-only run directory: one line (WriteError), not a traceback
            atomic.write_bytes(paths.vzdump_pid(), f"{upid}\n".encode(), durable=False)
            yield

    def _guests(
        self, opts: BackupOptions, storage: str | None, dumpdir: Path, hooks: Hooks
    ) -> None:
        ionice(opts.ionice)
        private_mounts()
        hooks.run("job-start")
        target = get_storage(storage) if storage is not None else None
        if isinstance(target, ResticStorage):
            from shared.storage import resticnodekey

            # once per storage, before any guest is stopped or frozen: every restic run
            # after it opens the repository in milliseconds
            resticnodekey.ensure(target)
        env = JobEnv(opts, storage, dumpdir, self.log, hooks, self.stdout)
        self.result.job_log = list(self.log.lines)
        selected = select_guests(opts, self.log.warn)
        workers = min(opts.parallel, len(selected))
        if workers > 1:
            from .parallel import run_guests  # asyncio only costs start-up time when used

            # every started guest has cleaned up when this returns, also after a signal
            self.result.guests += run_guests(env, selected, workers)
        else:
            self._one_by_one(env, selected)
        if interrupted():
            raise Interrupted()
        self._reclaim(env)
        hooks.run("job-end")

    def _reclaim(self, env: JobEnv) -> None:
        """Retention on a restic storage forgets snapshots guest by guest; the data they alone
        used goes in one ``restic prune`` for the whole run, after the last guest: a prune reads
        the repository's whole index and holds it alone, and the guests' downtime and the other
        workers' backups do not wait for it."""
        for storage in sorted(env.reclaim):
            if not isinstance(get_storage(storage), ResticStorage):
                continue  # an archive's space went with its file
            self.log.info(f"reclaiming the space of removed backups on storage '{storage}'")
            try:
                reclaim_space(storage)
            except CtkitError as err:
                self.log.warn(f"unable to reclaim space - {err} (the next prune does it)")

    def _one_by_one(self, env: JobEnv, selected: list[int]) -> None:
        for i, vmid in enumerate(selected):
            guest = GuestBackup(env, vmid).run()
            self.result.guests.append(guest)
            if guest.error == Interrupted().message or interrupted():
                # the guest cleaned up; the job ends and the rest is reported as aborted (§6)
                self.result.guests += [GuestResult.aborted(v) for v in selected[i + 1 :]]
                raise Interrupted()
            if guest.error == OutputClosed().message:
                # nobody reads stdout any more: the next guests would go nowhere
                self.result.guests += [GuestResult.aborted(v) for v in selected[i + 1 :]]
                raise OutputClosed()

    def _done(self, opts: BackupOptions | None = None) -> JobResult:
        failed = any(not g.ok for g in self.result.guests)
        if self.result.error is None:
            if failed:
                self.log.info("Backup job finished with errors")
            else:
                self.log.info("Backup job finished successfully")
                with contextlib.suppress(FileNotFoundError):
                    paths.vzdump_pid().unlink()
        self.result.finished = time.time()
        # the job-level lines for the notification: those before the guests were kept when the
        # guests started; a job that failed before (job-init, job-start, the lock) has them all,
        # its error among them, and the rest (job-end's output, the last line) come after
        lines = list(self.log.lines)
        if not self.result.job_log and not self.result.guests:
            self.result.job_log, lines = lines, []
        self.result.job_log_end = lines[len(self.result.job_log) :] if lines else []
        if opts is not None and (self.result.guests or self.result.error):
            from .. import notify  # mail and its email package: only at the end

            notify.notify(self.result, opts, warn=self.log.warn)
        return self.result


def run(
    params: Mapping[str, Any],
    *,
    stdout: IO[bytes] | None = None,
    stream: IO[str] | None = None,
) -> JobResult:
    """Run a job; raises JobError when a guest failed, and the job's own error (with its exit
    code: LockError, Interrupted, CommandError, ...) when the job failed."""
    job = Job(params, stdout=stdout, stream=stream)
    result = job.run()
    if job.error is not None:
        raise job.error
    if not result.ok:
        raise JobError("job errors")
    return result
