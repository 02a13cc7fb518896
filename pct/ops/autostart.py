"""``pct startall`` / ``pct stopall``: the host starts and stops its containers (Proxmox's
node startall/stopall, run at boot and shutdown by ``ctkit-guests.service``).

startall starts every container with ``onboot: 1`` (all with ``force``) by ``startup: order=``
(lower first, no order last, then by id), waits ``up`` seconds after each, and skips templates,
running and locked containers (a ``backup`` lock left by a crash is removed first, as
Proxmox does, unless a vzdump runs; a ``mounted`` one is started, as ``pct start`` and
Proxmox's startall start it: a power cut leaves it behind with nothing mounted). stopall shuts
down in reverse order; the containers of one order shut down in parallel (up to
``max_workers`` at once, the next as soon as one is down), each within its ``down`` timeout
(else ``timeout``), then a hard stop.
Each result is a line in the task log; failures are counted for the exit code.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby

from shared import parentdeath, paths
from shared.ctconfig import store
from shared.ctconfig.options import MOUNTED_LOCK
from shared.errors import CommandError, CtkitError
from shared.formats.types import FormatError
from shared.locks import config_lock, flock
from shared.runtime import lifecycle, lxcapi, stopper
from shared.tasklog import TaskLog

NO_ORDER = sys.maxsize  # Proxmox's LONG_MAX: containers without an order come last
STOP_WORKERS = 4  # containers of one order shut down at once (--max-workers)
STALE_LOCK_WAIT = 10.0  # seconds to wait for a running vzdump before leaving its locks alone


@dataclass(frozen=True)
class Guest:
    vmid: int
    order: int
    up: int | None
    down: int | None
    onboot: bool
    template: bool
    lock: str | None


def guests(
    vms: Iterable[int] | None = None, broken: Callable[[int, str], None] | None = None
) -> list[Guest]:
    """Every container (or those of ``vms``) with its startup settings, in start order. One
    whose config cannot be read is told to ``broken`` and left out: one bad config must not
    keep every other container from starting at boot, or from stopping at shutdown."""
    wanted = set(vms) if vms is not None else None
    found = []
    for vmid in store.list_vmids():
        if wanted is not None and vmid not in wanted:
            continue
        try:
            guest = _guest(vmid)
        except (CtkitError, FormatError, ValueError) as err:
            if broken is not None:
                broken(vmid, str(err))
            continue
        if guest is not None:
            found.append(guest)
    return sorted(found, key=lambda g: (g.order, g.vmid))


def _guest(vmid: int) -> Guest | None:
    conf = store.load_or_none(vmid)
    if conf is None:
        return None
    startup = conf.get("startup") or {}
    return Guest(
        vmid, startup.get("order", NO_ORDER), startup.get("up"), startup.get("down"),
        bool(conf.get("onboot")), conf.is_template, conf.lock,
    )  # fmt: skip


def startall(
    log: TaskLog,
    *,
    force: bool = False,
    vms: Iterable[int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Start the onboot containers in order; raises CommandError naming the failures."""
    from shared.runtime.recovery import recover_all

    # at boot, what a backup or migration killed with the host left (frozen, stopped, locked)
    # is undone first: a container a migration had stopped is started again by its recovery
    recover_all(log.info, log.warn)
    remove_stale_backup_locks(log)
    failed: list[int] = []
    for guest in guests(vms, _broken(log, failed, "Starting")):
        if (not guest.onboot and not force) or guest.template or lxcapi.is_running(guest.vmid):
            continue
        if guest.lock and guest.lock != MOUNTED_LOCK:  # `pct start` takes a mounted one too
            log.warn(f"Skipping CT {guest.vmid}: CT is locked ({guest.lock})")
            continue
        log.info(f"Starting CT {guest.vmid}")
        try:
            lifecycle.start(guest.vmid, log=log.plain)
        except CtkitError as err:
            log.error(f"Starting CT {guest.vmid} failed: {err}")
            failed.append(guest.vmid)
            continue
        log.info(f"CT {guest.vmid} started")
        if guest.up:
            log.info(f"Waiting for {guest.up} seconds (startup delay)")
            sleep(min(guest.up, lifecycle.MAX_WAIT))
    _fail_if(failed, "start")


def remove_stale_backup_locks(log: TaskLog) -> None:
    """A ``lock: backup`` at boot is left over from a backup that died with the host; Proxmox
    removes it before starting guests. The vzdump lock keeps a running backup's locks."""
    try:
        with flock(paths.vzdump_lock(), STALE_LOCK_WAIT):
            for vmid in store.list_vmids():
                try:
                    with config_lock(vmid):
                        conf = store.load_or_none(vmid)
                        if conf is not None and conf.lock == "backup":
                            conf.delete("lock")
                            store.save(conf)
                            log.warn(f"removed left over backup lock from '{vmid}'!")
                except CtkitError as err:  # one broken config; the others still get theirs
                    log.warn(f"CT {vmid}: not removing a left over backup lock - {err}")
    except CtkitError as err:
        log.warn(f"not removing left over backup locks - {err}")


def _broken(log: TaskLog, failed: list[int], doing: str) -> Callable[[int, str], None]:
    def tell(vmid: int, why: str) -> None:
        log.error(f"{doing} CT {vmid} failed: {why}")
        failed.append(vmid)

    return tell


def _fail_if(failed: list[int], what: str) -> None:
    if failed:
        ids = ", ".join(map(str, failed))
        raise CommandError(f"unable to {what} {len(failed)} container(s): {ids}")


def stopall(
    log: TaskLog,
    *,
    vms: Iterable[int] | None = None,
    timeout: int,
    force_stop: bool = True,
    max_workers: int | None = None,
) -> None:
    """Shut the running containers down, highest order first, one order group at a time."""
    # a shutdown is waiting, not CPU work: the host's shutdown must not take the sum of every
    # container's timeout on a machine with few CPUs
    workers = max_workers or STOP_WORKERS
    failed: list[int] = []
    running = [
        g for g in guests(vms, _broken(log, failed, "Stopping")) if lxcapi.is_running(g.vmid)
    ]
    by_order = groupby(sorted(running, key=lambda g: (-g.order, -g.vmid)), key=lambda g: g.order)
    for _order, group in by_order:
        failed += _stop_group(list(group), workers, timeout, force_stop, log)
    _fail_if(sorted(failed), "stop")


def _stop_group(
    members: list[Guest], workers: int, timeout: int, force_stop: bool, log: TaskLog
) -> list[int]:
    """Shut an order's containers down, up to ``workers`` at once, as Proxmox's stopall does:
    the next one starts as soon as any ends, so a guest that ignores the halt holds one worker
    for its ``down``, not a batch (a batch took a whole ``down`` per slow guest in it). Each
    result is logged when its container is down, not in the order they started."""
    todo = collections.deque(members)
    running: dict[int, tuple[Guest, int, int]] = {}  # pidfd: (guest, pid, read end)
    failed: list[int] = []
    try:
        while todo or running:
            while todo and len(running) < workers:
                guest = todo.popleft()
                pid, read_fd = _start_stop(guest, timeout, force_stop, log)
                running[os.pidfd_open(pid)] = (guest, pid, read_fd)
            ready, _, _ = select.select(list(running), [], [])  # a pidfd: its child has ended
            for pidfd in ready:
                guest, pid, read_fd = running.pop(pidfd)
                os.close(pidfd)
                if not _stop_result(guest, pid, read_fd, log):
                    failed.append(guest.vmid)
    finally:
        # interrupted: a signal to the whole group (Ctrl-C, systemd's stop) ends the children's
        # shutdowns too; one to this process alone leaves them to finish theirs
        for pidfd, (_guest, _pid, read_fd) in running.items():
            os.close(pidfd)
            os.close(read_fd)
    return failed


def _start_stop(guest: Guest, timeout: int, force_stop: bool, log: TaskLog) -> tuple[int, int]:
    """A forked child shuts ``guest`` down (python-lxc's shutdown blocks its caller) and tells
    its error through a pipe: (its pid, the pipe's read end)."""
    wait = guest.down if guest.down is not None else timeout
    log.info(f"Stopping CT {guest.vmid} (timeout = {wait} seconds)")
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _stop_child(guest.vmid, wait, force_stop, (read_fd, write_fd), parent)
    os.close(write_fd)
    return pid, read_fd


def _stop_result(guest: Guest, pid: int, read_fd: int, log: TaskLog) -> bool:
    """The ended child's result, logged; True when the container is down."""
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        log.error(f"Stopping CT {guest.vmid} failed: {message or 'unknown error'}")
        return False
    log.info(f"CT {guest.vmid} stopped")
    return True


OVERRULED_WAIT = 15.0  # seconds for the stop that overruled a guest's shutdown to end it


def _stopped_by_another(vmid: int) -> bool:
    """After a signal ended this child's shutdown: whether the guest is down soon (the stop
    that overruled the shutdown holds the lock until then), so that stopall counts it."""
    try:
        return lxcapi.wait_state(vmid, "STOPPED", OVERRULED_WAIT)
    except CtkitError:  # a monitor that does not answer: not down
        return False


def _stop_child(
    vmid: int, timeout: int, force_stop: bool, pipe: tuple[int, int], parent: int
) -> None:
    """A forked child's shutdown of ``vmid``; its error goes to the pipe's write end. It ends
    with stopall: left running, it held the container's lock until its ``down`` ran out, and
    the next stopall (or ``pct stop``) failed on that lock."""
    message, code = b"", 0
    try:
        os.close(pipe[0])
        parentdeath.die_with(parent, signal.SIGTERM)  # then ends as on any signal: unlocked
        lifecycle.shutdown(
            vmid,
            timeout=timeout,
            force_stop=force_stop,
            log=lambda _m: None,
            task=stopper.SHUTDOWN,  # Proxmox's stopall shuts down by vzshutdown tasks
        )
    except CtkitError as err:
        message, code = str(err).encode(), 1
    except KeyboardInterrupt:  # a pct stop --overrule-shutdown of this guest, or stopall gone
        if os.getppid() != parent or not _stopped_by_another(vmid):
            message, code = b"interrupted by signal", 1
    except BaseException as err:  # a forked child must never return into the caller
        message, code = repr(err).encode(), 1
    finally:
        with contextlib.suppress(BaseException):  # stopall gone: nobody reads it
            os.write(pipe[1], message)
        os._exit(code)
