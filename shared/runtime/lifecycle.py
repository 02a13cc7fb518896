"""Start, stop, shut down and reboot containers (pct start/stop/shutdown/reboot, vzdump).

Every operation checks state and the config ``lock:`` under the per-container flock, and holds
it until the container is started, or stopped and its monitor gone (as Proxmox does): nothing
gets in between. The post-stop hook would wait for that lock to apply the pending changes; the
stop's note (:mod:`.stopper`) tells it that the stopper applies them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from .. import atomic, paths, signals
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.options import MOUNTED_LOCK
from ..ctconfig.pending import apply_pending
from ..errors import CommandError, ConfigError, CtkitError, StateError
from ..locks import config_lock
from ..printable import printable
from ..storage.hostreach import set_host_reach
from . import hookscript, lxcapi, stopper
from .cgroups import CGroup, Layout, detect_layout, memsw_supported
from .ctview import lxc_view
from .guestview import config_idmap, config_root_ids
from .idcheck import check_subids
from .lxccheck import check_config
from .lxccmd import MonitorSilent
from .lxcconf import HostInfo, generate, seccomp_rules
from .mounts import wait_released
from .namespace import left_host
from .propagation import ensure_shared_root
from .startcheck import check_start_config
from .volumes import free, recorded, size_of

Log = Callable[[str], None]
MAX_WAIT = (1 << 31) - 1  # seconds: longer timeouts and delays overflow LXC's and sleep's types
START_TIMEOUT = 10.0
ABORT_WAIT = 10.0  # seconds for LXC's monitor of a failed start to end (its post-stop hooks)
MONITOR_WAIT = 30.0  # seconds for the monitor of a stopped CT to end (its post-stop hooks)


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr)


def host_info(*, env: bool = False) -> HostInfo:
    """The host's side of the generated config; ``env``: the container has an environment,
    whose key asks python-lxc for LXC's version (its import only then)."""
    layout = detect_layout()
    return HostInfo(
        layout=layout,
        memsw=layout is Layout.V2 or memsw_supported(),
        apparmor=Path("/sys/kernel/security/apparmor").exists(),
        cpus=os.cpu_count() or 1,
        env_key=lxcapi.environment_key() if env else HostInfo.env_key,
    )


def hook_error_file(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.hook-error"


def warnings_file(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.warnings"


def skiplock_file(vmid: int) -> Path:
    return paths.run_dir() / f"skiplock-{vmid}"


def write_lxc_config(conf: Config) -> Path:
    """(Re)generate ``<lxcpath>/<vmid>/config`` and the per-CT seccomp rules.

    The text is loaded by LXC first; a config LXC rejects is never installed, and the one a
    previous start left is removed, so that no listing or later command trips over it.
    """
    view = lxc_view(conf)
    lxcdir = paths.lxc_dir(conf.vmid)
    path = lxcdir / "config"
    text = generate(view, host_info(env=bool(view.env)))
    try:
        check_config(conf.vmid, text)
    except ConfigError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    (lxcdir / "rootfs").mkdir(parents=True, exist_ok=True)
    set_host_reach(lxcdir, config_root_ids(conf))  # the kind may have changed (restore)
    if view.unprivileged:
        atomic.write_text(lxcdir / "rules.seccomp", seccomp_rules(view))
    atomic.write_text(path, text)
    return path


def apply_pending_all(conf: Config, log: Log = _stderr) -> bool:
    """Apply every pending change of a stopped CT; failures stay pending with a warning."""
    if conf.pending.is_empty() and not conf.pending_deletes():
        return False
    result = apply_pending(conf, alloc=recorded(), free=free, volume_size=size_of)
    for warning in result.warnings:
        log(f"WARN: {warning}")
    return True


def _check_start(conf: Config, skiplock: bool) -> None:
    vmid = conf.vmid
    if lxcapi.is_running(vmid):
        raise StateError(f"CT {vmid} already running")
    if conf.is_template:
        raise StateError("you can't start a CT if it's a template")
    if not skiplock and conf.lock != MOUNTED_LOCK:
        store.check_lock(conf)
    check_subids(vmid, config_idmap(conf))


def debug_log_file(vmid: int) -> Path:
    return paths.run_dir() / f"ct-{vmid}.debug"


def start(vmid: int, *, skiplock: bool = False, debug: bool = False, log: Log = _stderr) -> None:
    """Start a stopped CT; with ``debug`` (or ``debug: 1``) LXC logs at DEBUG level to
    :func:`debug_log_file` and a failed start prints that log, as Proxmox does."""
    with config_lock(vmid):
        started = _start_held(vmid, skiplock=skiplock, debug=debug, log=log)
    _after_start(started, log)


class _Started(NamedTuple):
    conf: Config
    ok: bool
    debug_log: Path | None
    monitor: tuple[int, int] | None


def _start_held(vmid: int, *, skiplock: bool, debug: bool, log: Log = _stderr) -> _Started:
    """The start's work under the config lock (held by the caller): checks, pending changes,
    the LXC config, the pre-start hookscript, and LXC's start until RUNNING."""
    conf = store.load(vmid)
    _check_start(conf, skiplock)
    if apply_pending_all(conf, log):
        store.save(conf)
    check_start_config(conf, log)
    write_lxc_config(conf)
    debug = debug or conf.get("debug") is True
    CGroup(vmid).remove_stale()
    if not left_host():  # else checked as this process left it (namespace)
        ensure_shared_root()
    paths.run_dir().mkdir(parents=True, exist_ok=True)
    stale_files = (hook_error_file(vmid), warnings_file(vmid), debug_log_file(vmid))
    # a stop's note left by a killed stopper: whoever holds the lock now stops nothing
    for stale in (*stale_files, paths.lxc_dir(vmid) / "lxc.log", stopper.note_file(vmid)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    if skiplock:
        skiplock_file(vmid).touch()
    hookscript.run(conf, "pre-start", fatal=True)
    debug_log = debug_log_file(vmid) if debug else None
    launched = lxcapi.start_daemon(vmid, debug_log=debug_log)
    ok = launched.ok and lxcapi.wait_state(vmid, "RUNNING", START_TIMEOUT)
    return _Started(conf, ok, debug_log, launched.monitor)


def _after_start(started: _Started, log: Log) -> None:
    """What follows a start outside the lock: the failure's reasons, or the warnings and the
    post-start hookscript."""
    conf, vmid = started.conf, started.conf.vmid
    with contextlib.suppress(FileNotFoundError):
        skiplock_file(vmid).unlink()
    if not started.ok:
        _settle_failed_start(vmid, conf, started.monitor)
        for line in start_failure_reason(vmid):
            log(line)
        if started.debug_log is not None:
            _print_debug_log(started.debug_log, log)
        raise CommandError(f"startup for container '{vmid}' failed")
    _print_warnings(vmid, log)
    hookscript.run(conf, "post-start", fatal=False, warn=log)


def _settle_failed_start(vmid: int, conf: Config, monitor: tuple[int, int] | None) -> None:
    """LXC reports a failed start while its monitor still runs the post-stop hooks and the
    container's mount namespace still holds its raw volumes: the next command (a destroy,
    another start) found them in use, and met the hooks still running. Return once the
    monitor has ended and the volumes are let go (bounded), as a stop does: the monitor
    process itself, which closes its command socket before those hooks."""
    deadline = time.monotonic() + ABORT_WAIT
    while not lxcapi.monitor_gone(vmid, monitor) and time.monotonic() < deadline:
        with contextlib.suppress(MonitorSilent):  # busy with its post-stop hooks
            if lxcapi.monitor_alive(vmid) and lxcapi.state(vmid) == "RUNNING":
                return  # up after all, only later than the start waited for: nothing to settle
        time.sleep(0.05)
    CGroup(vmid).remove_stale()  # what the aborted start left would block the next one
    wait_released(conf)


def start_failure_reason(vmid: int) -> list[str]:
    """What the pre-start hook or LXC said about a failed start (the real reason, not a status)."""
    lines: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        lines += hook_error_file(vmid).read_text(errors="replace").split("\n")
    if not any(lines):
        lines = []
        with contextlib.suppress(FileNotFoundError):
            log = (paths.lxc_dir(vmid) / "lxc.log").read_text(errors="replace").split("\n")
            lines += [ln.split(" - ", 1)[-1] for ln in log if " ERROR " in ln][:5]
    return [printable(line) for line in lines if line]  # they may quote the container


def _print_debug_log(path: Path, log: Log) -> None:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    log(f"debug log of the failed start ({path}):")
    for line in text.rstrip("\n").split("\n"):
        log(printable(line))


def _print_warnings(vmid: int, log: Log) -> None:
    with contextlib.suppress(FileNotFoundError):
        for line in warnings_file(vmid).read_text(errors="replace").split("\n"):
            if line:
                log(f"WARN: {printable(line)}")  # they quote the container's files


def _check_stop(vmid: int, skiplock: bool, not_running: str) -> Config:
    """A stop's checks, under the config lock (held by the caller)."""
    conf = store.load(vmid)
    if not lxcapi.is_running(vmid):
        raise StateError(not_running)
    if not skiplock and conf.lock != MOUNTED_LOCK:
        store.check_lock(conf)
    return conf


def thaw_if_frozen(vmid: int) -> None:
    """A suspended (frozen) CT neither handles the shutdown signal nor dies of SIGKILL under
    the v1 freezer: thaw it first so that stop and shutdown work on it."""
    cgroup = CGroup(vmid)
    with contextlib.suppress(OSError):
        if cgroup.is_frozen():
            cgroup.thaw()


def stop(
    vmid: int, *, skiplock: bool = False, overrule_shutdown: bool = False, log: Log = _stderr
) -> None:
    """Hard stop (``lxc-stop --kill``); ``overrule_shutdown`` first aborts a ``pct shutdown``
    of the CT, which would hold the lock until its timeout."""
    if overrule_shutdown:
        _overrule_shutdown(vmid, log)
    with config_lock(vmid), _stopping(vmid, "stop", log):
        conf = _check_stop(vmid, skiplock, f"CT {vmid} not running")
        _kill(conf, log)


def kill_held(conf: Config, *, log: Log = _stderr) -> None:
    """Hard-stop the running CT of ``conf`` under the config lock (held by the caller, who
    loaded ``conf`` under it); returns once it is down and its monitor gone."""
    with _stopping(conf.vmid, "stop", log):
        _kill(conf, log)


def _kill(conf: Config, log: Log) -> None:
    vmid = conf.vmid
    hookscript.run(conf, "pre-stop", fatal=False, warn=log)
    thaw_if_frozen(vmid)
    lxcapi.state(vmid)  # a monitor that does not answer would hold liblxc's stop() for ever
    monitor = lxcapi.monitor_process(vmid)
    lxcapi.container(vmid).stop()
    if not lxcapi.wait_state(vmid, "STOPPED", 30):
        raise CommandError(f"unable to stop CT {vmid}")
    _settle_stopped(conf, monitor)


@contextlib.contextmanager
def _stopping(vmid: int, task: str, log: Log) -> Iterator[None]:
    """Under the config lock, from a stop's checks on: the note that tells the post-stop hook
    this process holds the lock (waiting for it, the hook held up the monitor the stop asks),
    and the pending changes the hook therefore leaves to us applied however the stop ends (a
    signal in its wait, a guest that went down by itself) - if the container is down."""
    with stopper.noted(vmid, task):
        try:
            yield
        finally:
            with signals.held():
                _apply_pending_if_down(vmid, log)


def _apply_pending_if_down(vmid: int, log: Log) -> None:
    try:
        if lxcapi.is_running(vmid):
            return
        conf = store.load_or_none(vmid)
        if conf is not None and apply_pending_all(conf, log):
            store.save(conf)
    except CtkitError as err:  # the stop's own outcome stands; the next start tries again
        log(f"WARN: pending changes are applied at the next start - {err}")


def _settle_stopped(conf: Config, monitor: tuple[int, int] | None) -> None:
    """After LXC reported the CT STOPPED: wait (bounded) for its monitor to end (the post-stop
    hook unmounts and runs the hookscript), then for its raw volumes to be let go."""
    vmid = conf.vmid
    deadline = time.monotonic() + MONITOR_WAIT
    # not cut short by a signal noted earlier: the cleanup of an interrupted command stops its
    # container too (the main thread's handler still interrupts the wait itself)
    while not lxcapi.monitor_gone(vmid, monitor) and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_released(conf)


def _overrule_shutdown(vmid: int, log: Log) -> None:
    holder = stopper.current(vmid)
    if holder is None or holder.task != stopper.SHUTDOWN:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder.pid, signal.SIGTERM)  # it ends its wait and lets go of the lock
    log(f"overruled vzshutdown tasks: {holder.pid}")


def shutdown(
    vmid: int,
    *,
    timeout: int = 60,
    force_stop: bool = False,
    skiplock: bool = False,
    log: Log = _stderr,
    not_running: str | None = None,
    task: str = "other",
    hold_lock: bool = True,
) -> None:
    """Clean shutdown; without ``force_stop`` a CT still running after ``timeout`` keeps running.

    ``task`` names it in the stop's note: :data:`stopper.SHUTDOWN` for one that
    ``pct stop --overrule-shutdown`` may abort. ``hold_lock=False`` is for a backup's or a
    migration's shutdown: their ``lock:`` property keeps every other command off, which then
    says so at once instead of waiting for the flock; the post-stop hook applies the pending
    changes, as it does after a stop from inside the container."""
    not_running = not_running or f"CT {vmid} not running"
    if not hold_lock:
        with config_lock(vmid):
            conf = _check_stop(vmid, skiplock, not_running)
        _shut_down(conf, timeout, force_stop, log)
        return
    with config_lock(vmid), _stopping(vmid, task, log):
        conf = _check_stop(vmid, skiplock, not_running)
        _shut_down(conf, timeout, force_stop, log)


def _shut_down(conf: Config, timeout: int, force_stop: bool, log: Log) -> None:
    vmid = conf.vmid
    hookscript.run(conf, "pre-stop", fatal=False, warn=log)
    thaw_if_frozen(vmid)
    lxcapi.state(vmid)  # a monitor that does not answer would hold liblxc's shutdown() for ever
    monitor = lxcapi.monitor_process(vmid)
    ct = lxcapi.container(vmid)
    # python-lxc's shutdown(0) only sends the halt signal: the wait is ours, by the state.
    # Its own wait holds the GIL: in a parallel backup every other worker, and the signal
    # handling, stood still until a slow guest was down
    ct.shutdown(0)
    deadline = time.monotonic() + min(timeout, MAX_WAIT)
    while not lxcapi.wait_state(vmid, "STOPPED", min(0.5, max(deadline - time.monotonic(), 0))):
        signals.raise_if_interrupted()  # where a thread other than the main one acts on one
        if time.monotonic() >= deadline:
            break
    if not lxcapi.wait_state(vmid, "STOPPED", 1):
        if not force_stop:
            raise StateError("container did not stop")
        ct.stop()
        if not lxcapi.wait_state(vmid, "STOPPED", 30):
            raise CommandError(f"unable to stop CT {vmid}")
    _settle_stopped(conf, monitor)


def reboot(vmid: int, *, timeout: int | None = None, log: Log = _stderr) -> None:
    """Shutdown (killed after the timeout), then a fresh start so pending changes apply: both
    under one hold of the config lock, as Proxmox's, so nothing starts between them. One
    interrupted in between starts the container again itself; one killed leaves a note that it
    is owed a start, for the next command's recovery (a record of its own would refuse a
    command that waits for the lock)."""
    owed = shutting_down = False
    try:
        with config_lock(vmid):
            with _stopping(vmid, "reboot", log):
                conf = _check_stop(vmid, False, f"VM {vmid} not running")
                stopper.note_owed(vmid, stopper.REBOOT)
                owed = shutting_down = True
                _shut_down(conf, timeout or 60, True, log)
                shutting_down = False
            started = _start_held(vmid, skiplock=False, debug=False, log=log)
    except KeyboardInterrupt:
        if shutting_down:
            with signals.held():
                _start_again(vmid, log)
        raise
    finally:
        if owed:
            stopper.drop_owed(vmid)
    _after_start(started, log)


def _start_again(vmid: int, log: Log) -> None:
    """A reboot interrupted while the container went down: once it is down, up again."""
    from .recovery import restart_stopped  # (recovery imports this module)

    try:
        restart_stopped(vmid, f"pct {stopper.REBOOT}", log)
    except CtkitError as err:
        log(f"WARN: CT {vmid}: starting it again failed - {err}")
