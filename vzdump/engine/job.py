"""A vzdump job: options, target, the node lock, guests one after another, job hooks,
notification (spec vzdump §1, §6, §7)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

from shared import paths
from shared.ctconfig import store
from shared.errors import ConfigError, CtkitError, JobError, LockError
from shared.formats import vzdumpconf
from shared.locks import flock
from shared.storage.api import backup_dir, get_storage

from .. import notify
from ..options import OPTIONS, check_params, job_header, merge_options
from ..report import JobResult
from .guest import GuestBackup, JobEnv
from .hooks import Hooks, check_script
from .log import JobLog

IGNORED = ("performance", "fleecing", "pbs-change-detection-mode")
CLONE_NEWNS = 0x00020000


def _signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """TERM, HUP and QUIT end the job like Ctrl-C: the guest's cleanup runs first."""
    old = {s: signal.signal(s, _signal) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def private_mounts() -> bool:
    """Unshare the mount namespace (/ rslave) so backup mounts are invisible to the host and
    vanish with this process. Best effort: impossible once threads run."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    subprocess.run(["mount", "--make-rslave", "/"], capture_output=True, check=False)
    return True


def ionice(level: int) -> None:
    args = ["-c", "3"] if level >= 8 else ["-c", "2", "-n", str(level)]
    subprocess.run(["ionice", *args, "-p", str(os.getpid())], capture_output=True, check=False)


def effective_options(params: Mapping[str, Any], log: JobLog) -> dict[str, Any]:
    conf = vzdumpconf.read(OPTIONS, paths.vzdump_conf())
    for warning in conf.warnings:
        log.warn(warning)

    def storage_prune(sid: str) -> Mapping[str, Any] | None:
        with contextlib.suppress(CtkitError):
            value = get_storage(sid).props.get("prune-backups")
            return dict(value) if value else None
        return None

    return merge_options(params, conf.values, storage_prune)


def resolve_target(opts: dict[str, Any]) -> tuple[str | None, Path]:
    """(storage id or None, dump directory), with Proxmox's errors."""
    if opts.get("dumpdir"):
        path = Path(opts["dumpdir"])
        if not path.is_dir():
            raise ConfigError(f"dumpdir '{path}' does not exist")
        return None, path
    sid = str(opts["storage"])
    try:
        return sid, backup_dir(sid)
    except CtkitError as err:
        raise CtkitError(f"could not activate storage '{sid}': {err}") from None


def select_guests(opts: Mapping[str, Any]) -> list[int]:
    if opts.get("all"):
        exclude = set(opts.get("exclude") or [])
        return [v for v in store.list_vmids() if v not in exclude]
    return sorted(set(opts.get("vmid") or []))


class Job:
    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        stdout: IO[bytes] | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.params = check_params(params)
        self.log = JobLog(stream)
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
        self.log.info(job_header(self.params))
        try:
            opts = effective_options(self.params, self.log)
            if opts.get("node") and opts["node"] != paths.node_name():
                return self._done()
            self._note_ignored(opts)
            hooks = Hooks(opts.get("script"), self.log.info)
            if opts.get("script"):
                check_script(opts["script"])
            if opts.get("dumpdir"):
                hooks.env["DUMPDIR"] = str(opts["dumpdir"])
            hooks.run("job-init")
            storage, dumpdir = resolve_target(opts)
            if opts.get("tmpdir") and not Path(opts["tmpdir"]).is_dir():
                raise ConfigError(f"tmpdir '{opts['tmpdir']}' does not exist")
            hooks.env.update({"DUMPDIR": str(dumpdir), **({"STOREID": storage} if storage else {})})
            with self._node_lock(int(opts.get("lockwait", 180))), signals_interrupt():
                self._guests(opts, storage, dumpdir, hooks)
        except CtkitError as err:
            self.result.error = str(err)
            self.log.error(f"Backup job failed - {err}")
        return self._done(opts if "opts" in locals() else dict(self.params))

    def _note_ignored(self, opts: Mapping[str, Any]) -> None:
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
            paths.vzdump_pid().write_text(f"{os.getpid()}\n")
            yield

    def _guests(
        self, opts: dict[str, Any], storage: str | None, dumpdir: Path, hooks: Hooks
    ) -> None:
        ionice(int(opts.get("ionice", 7)))
        private_mounts()
        hooks.run("job-start")
        env = JobEnv(opts, storage, dumpdir, self.log, hooks, self.stdout)
        self.result.job_log = list(self.log.lines)
        for vmid in select_guests(opts):
            guest = GuestBackup(env, vmid).run()
            self.result.guests.append(guest)
            if guest.error == "interrupted by signal":
                raise CtkitError("interrupted by signal")
        hooks.run("job-end")

    def _done(self, opts: Mapping[str, Any] | None = None) -> JobResult:
        failed = any(not g.ok for g in self.result.guests)
        if self.result.error is None:
            if failed:
                self.log.info("Backup job finished with errors")
            else:
                self.log.info("Backup job finished successfully")
                with contextlib.suppress(FileNotFoundError):
                    paths.vzdump_pid().unlink()
        self.result.finished = time.time()
        self.result.job_log_end = []
        if opts is not None and (self.result.guests or self.result.error):
            notify.notify(self.result, opts, warn=self.log.warn)
        return self.result


def run(params: Mapping[str, Any], *, stdout: IO[bytes] | None = None) -> JobResult:
    """Run a job; raises JobError when a guest failed, CtkitError when the job failed."""
    result = Job(params, stdout=stdout).run()
    if result.error:
        raise CtkitError(result.error) if "lock" not in result.error else LockError(result.error)
    if not result.ok:
        raise JobError("job errors")
    return result
