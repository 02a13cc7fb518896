"""The three backup modes (spec vzdump §4.2–4.5). Each is a context manager that brings the
data to archive into place and yields where tar should read it; leaving it undoes everything
(unmount, delete the snapshot, thaw or restart the container) on every exit path.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared import owner as owners
from shared import paths, signals
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint
from shared.errors import CommandError, CtkitError, StateError
from shared.parentdeath import tied_to_parent
from shared.rsyncacl import XFS_ACL_FILTER
from shared.runtime import lxcapi
from shared.runtime.beneath import check_mount_point
from shared.runtime.cgroups import CGroup
from shared.runtime.guestview import config_root_ids
from shared.runtime.mounts import mount_all, wait_released
from shared.runtime.recovery import RESTART_GRACE
from shared.toolenv import tool_env

from .hooks import Hooks

Log = Callable[[str], None]
SNAPNAME = "vzdump"


@dataclass
class GuestRun:
    """What a mode needs to know and reports back."""

    vmid: int
    conf: Config
    included: list[MountPoint]
    excluded: list[MountPoint]
    hooks: Hooks
    log: Log
    warn: Log
    error: Log
    tmpdir: Path
    bwlimit: int
    excludes: list[str]
    mode: str = "stop"
    hook_env: dict[str, str] = field(default_factory=dict)  # VMTYPE, HOSTNAME, TARGET, ...
    slot: int = 0  # the worker slot of a parallel job: its own /mnt/vzsnap<slot>
    frozen_seconds: float | None = None
    downtime_started: float | None = None
    notes: list[str] = field(default_factory=list)
    owner: owners.Owner | None = None  # the record a later command recovers from if we die

    def note(self, **changes: object) -> None:
        """Record a step in the owner record before taking it (and its undoing after)."""
        if self.owner is not None:
            owners.update(self.owner, **changes)

    def hook(self, phase: str) -> None:
        self.hooks.run(phase, self.mode, self.vmid, env=self.hook_env)

    @property
    def copydir(self) -> Path:
        """Suspend mode's copy of the data: apart from the config members in ``tmpdir``, which
        tar would otherwise meet twice (as hard links to themselves)."""
        return self.tmpdir / "rootfs"

    def included_keys(self) -> set[str]:
        return {mp.key for mp in self.included}

    def online_again(self) -> None:
        if self.downtime_started is None:
            return
        secs = time.monotonic() - self.downtime_started
        self.log(f"guest is online again after {int(secs) if secs >= 1 else '<1'} seconds")
        self.downtime_started = None


def vzsnap_dir(slot: int = 0) -> Path:
    """``/mnt/vzsnap<slot>``: created if missing, must be an empty directory."""
    path = paths.vzsnap_mount(slot)
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise CtkitError(f"mount point '{path}' is not a directory")
    if any(path.iterdir()):
        raise CtkitError(f"mount point '{path}' not empty")
    return path


def sources(run: GuestRun) -> list[str]:
    return ["./" if mp.key == "rootfs" else f".{mp.path}" for mp in run.included]


@contextlib.contextmanager
def mounted_volumes(run: GuestRun, snapname: str | None = None) -> Iterator[Path]:
    """The included volumes (or their snapshots) read-only at /mnt/vzsnap0<mp>."""
    target = vzsnap_dir(run.slot)
    keys = run.included_keys()
    tree = mount_all(
        run.conf,
        target,
        root_ids=config_root_ids(run.conf),
        include=lambda mp: mp.key in keys,
        read_only=True,
        snapshot=snapname,
    )
    try:
        yield target
    finally:
        with signals.held():
            for problem in tree.unmount(lazy=True):
                run.warn(problem)


# --- stop -----------------------------------------------------------------------------------


# how long a CT may take to go down after LXC reported the shutdown request as done (with
# stopwait 0 LXC only sends the halt signal and does not wait at all)
STOP_GRACE = 2.0


@contextlib.contextmanager
def stop_mode(run: GuestRun, running: bool, stopwait: int) -> Iterator[Path]:
    vzsnap_dir(run.slot)  # checked before the container is stopped (§3.3, case 40)
    stopped_by_us = shutdown_sent = False
    try:
        if running:
            run.hook("backup-start")
            run.log("stopping virtual guest")
            run.downtime_started = time.monotonic()
            run.hook("pre-stop")
            run.note(stopped=True)
            shutdown_sent = True
            from shared.runtime import lifecycle  # the start machinery: only for a running CT

            lifecycle.shutdown(
                run.vmid, timeout=stopwait * 60, skiplock=True, log=run.log, hold_lock=False
            )
            # never archive a container that is still running: the restart flag is set only
            # once it is really down (§4.2, case 16)
            if not lxcapi.wait_state(run.vmid, "STOPPED", STOP_GRACE):
                raise StateError("container did not stop")
            stopped_by_us = True
        else:
            run.hook("backup-start")
            # a pct stop just before the backup lock leaves the container's loop devices for a
            # moment (our own shutdown above waited for them): mounting meanwhile failed
            wait_released(run.conf)
        with mounted_volumes(run) as snapdir:
            yield snapdir
    finally:
        with signals.held():
            if shutdown_sent and not stopped_by_us:
                _wait_down(run)
            # also when interrupted while it was going down: a CT we stopped comes back
            if stopped_by_us or (shutdown_sent and not lxcapi.is_running(run.vmid)):
                _restart(run)


def _wait_down(run: GuestRun) -> None:
    """Interrupted while the guest went down: LXC reports it running until its init is done,
    and taken as running here, it stayed down for good once it got there. It is waited for
    (as the next command waits for one a killed backup was stopping), then started again."""
    if lxcapi.is_running(run.vmid):
        run.log("waiting for the guest to finish going down, to start it again")
        if not lxcapi.wait_state(run.vmid, "STOPPED", RESTART_GRACE):
            return  # still up: its shutdown never took
    wait_released(run.conf)  # its raw volumes, before the start mounts them


def _restart(run: GuestRun) -> None:
    """Bring a container we stopped back (errors are warnings: the backup itself is done)."""
    started = False
    try:
        run.hook("pre-restart")
    except CtkitError as err:
        run.warn(str(err))
    finally:
        started = _start_again(run)
    try:
        run.hook("post-restart")
    except CtkitError as err:
        run.warn(str(err))
    if started:  # a guest that failed to start is not online (it was said to be, exit 0)
        run.online_again()


def _start_again(run: GuestRun) -> bool:
    try:
        if not lxcapi.is_running(run.vmid):
            run.log("restarting vm")
            from shared.runtime import lifecycle  # only when a CT we stopped comes back

            lifecycle.start(run.vmid, skiplock=True, log=run.log)
        run.note(stopped=False)
    except CtkitError as err:
        run.warn(f"unable to restart CT {run.vmid} - {err}")
        return False
    return True


# --- suspend --------------------------------------------------------------------------------


def rsync_argv(run: GuestRun, pid: int, nfs: bool) -> list[str]:
    argv = ["rsync", "--stats", "-h"]
    if not nfs:
        argv += ["-X", "-A", XFS_ACL_FILTER]
    # mtimes to the nanosecond: a file rewritten at the same size in the second of the first
    # sync is otherwise taken as unchanged by the final one (a stale file in the archive)
    argv += ["--numeric-ids", "-aH", "--delete", "--no-whole-file", "--sparse",
             "--one-file-system", "--relative", "--modify-window=-1"]  # fmt: skip
    if run.bwlimit:
        argv.append(f"--bwlimit={run.bwlimit}")
    argv += [f"--exclude={p}" for p in run.excludes]
    argv += [f"--exclude={mp.path}" for mp in run.excluded if mp.key != "rootfs"]
    root = f"/proc/{pid}/root/"
    argv.append(f"{root}/./")
    argv += [f"{root}/.{mp.path}" for mp in run.included if mp.key != "rootfs"]
    argv.append(str(run.copydir))
    return argv


def check_sources(run: GuestRun, pid: int) -> None:
    """rsync reaches the mount points through ``/proc/<pid>/root``, where an absolute symlink
    the container made resolves on the host: its mount point paths must be real directories
    of its own (as stop mode mounts them), or host files would go into its backup. Checked
    before each sync; the final one runs frozen, so what it copies is what was checked."""
    root = Path(f"/proc/{pid}/root")
    for mp in [*run.included, *run.excluded]:
        if mp.key != "rootfs":
            check_mount_point(root, mp.path)


def rsync(run: GuestRun, argv: list[str], which: str) -> None:
    # named by the root file system's source, the first (mount points come after it)
    source = next((a for a in argv if a.endswith("//./")), argv[-2] if len(argv) > 1 else "")
    run.log(f"starting {which} sync {source} to {argv[-1]}")
    started = time.monotonic()
    # a signal noted during held work interrupts it here too, not only once rsync is done
    # a vzdump killed with SIGKILL takes rsync along: recovery removes the copy it writes
    with signals.held():  # one that came while rsync was started kills it below, never leaves
        # it copying on into the temp dir the cleanup removes
        proc = subprocess.Popen(
            tied_to_parent(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=tool_env(),  # its --stats lines are read and logged as Proxmox's are
        )
    with proc:
        stdout, stderr = signals.communicate(proc)
    failed = proc.returncode not in (0, 24)  # 24: files vanished while copying, tolerated
    for line in stderr.splitlines():
        (run.error if failed else run.log)(line)
    if failed:
        raise CommandError(f"command '{shlex.join(argv)}' failed: exit code {proc.returncode}")
    total = next(
        (ln.split(":", 1)[1].strip() for ln in stdout.splitlines()
         if ln.startswith("Total transferred file size")), "?",
    )  # fmt: skip
    secs = int(time.monotonic() - started)
    run.log(f"{which} sync finished - transferred {total} in {secs}s")


@contextlib.contextmanager
def suspend_mode(run: GuestRun, nfs: bool) -> Iterator[Path]:
    pid = lxcapi.init_pid(run.vmid)
    if pid is None:
        raise StateError(f"CT {run.vmid} not running")
    argv = rsync_argv(run, pid, nfs)
    run.hook("backup-start")
    check_sources(run, pid)
    rsync(run, argv, "first")
    cgroup = CGroup(run.vmid)
    run.log("suspending guest")
    run.downtime_started = time.monotonic()
    ours = False  # a CT someone froze (pct suspend) stays frozen: not ours to thaw
    owed = False  # frozen after pre-stop: the restart hooks are owed, also to a failed backup
    try:
        run.hook("pre-stop")
        try:
            frozen = cgroup.is_frozen()
        except FileNotFoundError:  # its cgroup is gone: the guest went down (it rebooted)
            raise StateError(f"CT {run.vmid} stopped during the backup") from None
        owed = True
        if frozen:
            run.log("guest was already frozen - it stays frozen")
        else:
            ours = True
            run.note(frozen=True)
            cgroup.freeze()
        frozen_at = time.monotonic()
        check_sources(run, pid)
        rsync(run, argv, "final")
        run.log("resuming guest")
        owed = False  # from here the normal path runs them
        try:
            run.hook("pre-restart")
        finally:
            # thaw on every path, also when pre-restart fails (the upstream bug of §7)
            if ours:
                cgroup.thaw()
                run.frozen_seconds = time.monotonic() - frozen_at
        run.hook("post-restart")
        run.online_again()
    finally:
        with signals.held():
            # a backup that failed or was interrupted while the guest was frozen resumes it
            # between the restart hooks, as Proxmox's cleanup does: a service the hook stopped
            # in pre-stop stayed down
            if owed:
                _cleanup_hook(run, "pre-restart")
            # judged by the cgroup's real state, not by a flag (the upstream bug of §7)
            if ours and cgroup.exists() and cgroup.is_frozen():
                cgroup.thaw()
            if ours:
                run.note(frozen=False)
            if owed:
                _cleanup_hook(run, "post-restart")
    if run.frozen_seconds is not None:
        run.log(f"frozen window: {run.frozen_seconds:.3f} s")
    yield run.copydir


def _cleanup_hook(run: GuestRun, phase: str) -> None:
    """A hook phase of a cleanup: its failure is a warning, the backup's own error stands."""
    try:
        run.hook(phase)
    except CtkitError as err:
        run.warn(str(err))


# --- snapshot -------------------------------------------------------------------------------


def snapshot_possible(run: GuestRun) -> bool:
    # snapshots (and the start machinery they import) only in snapshot mode: the stop and
    # suspend modes of every backup would pay for their import
    from shared.runtime import snapshot

    keys = run.included_keys()
    return snapshot.snapshot_volumes(run.conf, lambda mp: mp.key in keys) is not None


def remove_stale_snapshot(run: GuestRun) -> None:
    if SNAPNAME in run.conf.snapshots:
        from shared.runtime import snapshot

        run.log(f"found old {SNAPNAME} snapshot (force removal)")
        for problem in snapshot.delete(run.vmid, SNAPNAME, force=True, expected_lock="backup"):
            run.warn(problem)
        run.conf = store.load(run.vmid)


@contextlib.contextmanager
def snapshot_mode(run: GuestRun) -> Iterator[Path]:
    from shared.runtime import snapshot

    remove_stale_snapshot(run)
    vzsnap_dir(run.slot)
    keys = run.included_keys()
    run.hook("backup-start")
    run.hook("pre-stop")
    # several volumes are snapshotted under one freeze; Proxmox logs it like this (the freeze
    # itself is snapshot.create's, around the snapshot instant only)
    several = len(run.included) > 1
    if several:
        run.log("suspend vm to make snapshot")
        run.downtime_started = time.monotonic()
    run.log(f"create storage snapshot '{SNAPNAME}'")
    taken = False
    run.note(snapshot=SNAPNAME, frozen=True)
    try:
        report = snapshot.create(
            run.vmid,
            SNAPNAME,
            description="vzdump backup snapshot",
            include=lambda mp: mp.key in keys,
            expected_lock="backup",
            allow_reserved=True,
            owned=run.owner is not None,  # noted above: its record covers the snapshot
        )
        taken = True
        run.note(frozen=False)
        run.frozen_seconds = report.seconds
        run.log(f"frozen window: {report.seconds:.3f} s")
        run.hook("pre-restart")
        if several:
            run.log("resume vm")
            run.online_again()
        run.hook("post-restart")
        run.conf = store.load(run.vmid)
        with mounted_volumes(run, SNAPNAME) as snapdir:
            yield snapdir
    finally:
        with signals.held():
            if taken:
                _remove_snapshot(run)
            else:
                run.note(snapshot="", frozen=False)  # create cleaned up after itself


def _remove_snapshot(run: GuestRun) -> None:
    from shared.runtime import snapshot

    run.log(f"cleanup temporary '{SNAPNAME}' snapshot")
    try:
        for problem in snapshot.delete(run.vmid, SNAPNAME, expected_lock="backup"):
            run.warn(problem)
        run.note(snapshot="")
    except CtkitError as err:
        run.warn(f"snapshot '{SNAPNAME}' was not (fully) removed - {err}")
