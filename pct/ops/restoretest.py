"""``pct restore-test``: prove a backup restores by restoring, starting and destroying it.

The backup is restored as a throwaway unprivileged container (whatever the backup was) with a
free id from a range of its own, on the storage given, with new MAC addresses and without its
network interfaces, bind/device mount points, start-at-boot and hook script (the copy must
never meet the original's network or the host's directories; it is restored untrusted, so
nothing of the archive's config that reaches outside the container is kept either, see
``restore_trust``). It is started, must reach RUNNING, and optionally runs a check command
inside. Whatever happens, the container and its volumes are destroyed before returning; the
outcome is recorded beside the archive as a verification of kind ``restore-test``.

A marker ``run/ctkit/restore-test-<vmid>.lock`` is held (flock) for the whole test; TERM, HUP,
QUIT and INT clean up at once. A test killed outright (SIGKILL) leaves the marker unlocked, and
a guard forked at its start destroys the container at once (``shared.parentdeath.guarding``).
What a power loss, or a kill of the guard too, leaves is destroyed by the next restore test on
the same range before it starts.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared import paths, signals
from shared.backups.locate import locate
from shared.backups.sidecar import Verification, now, record
from shared.ctconfig import store
from shared.errors import AlreadyExistsError, CtkitError, LockError, StateError, VerifyError
from shared.locks import config_lock, flock
from shared.parentdeath import guarding
from shared.runtime import lifecycle, lxcapi
from shared.signals import interruptible

from .destroy import destroy
from .restore import RestoreRequest, restore
from .vmidrange import DEFAULT_RANGE

Log = Callable[[str], None]
CHECK_TIMEOUT = 300.0
CHOOSE_TIMEOUT = 600.0  # another test may be destroying a leftover meanwhile
# config keys the throwaway copy must not keep: the original's network, host paths, autostart
_DROP_KEYS = ("onboot", "startup", "hookscript", "protection")


@dataclass
class RestoreTest:
    volid: str
    storage: str = "local"
    vmid_range: tuple[int, int] = DEFAULT_RANGE
    check: Sequence[str] | None = None  # command run inside, must exit 0
    timeout: float = 60.0  # seconds to reach RUNNING


def marker(vmid: int) -> Path:
    """Held (flock) while a restore test uses ``vmid``; left behind only by a killed test."""
    return paths.run_dir() / f"restore-test-{vmid}.lock"


def recover_stale(first: int, last: int, log: Log) -> None:
    """Destroy what a killed restore test left in the range: its marker is there, unlocked."""
    for lock in sorted(paths.run_dir().glob("restore-test-*.lock")):
        vmid_text = lock.name.removeprefix("restore-test-").removesuffix(".lock")
        if vmid_text.isdigit() and first <= int(vmid_text) <= last:
            _recover(int(vmid_text), log)


def _recover(vmid: int, log: Log) -> None:
    """Destroy CT ``vmid`` and its marker, left by a killed restore test; nothing while a test
    holds the marker."""
    lock = marker(vmid)
    try:
        with flock(lock, 0):
            if store.load_or_none(vmid) is not None:
                log(f"removing CT {vmid} left by an interrupted restore test")
                _drop_lock(vmid)
                destroy(vmid, force=True, unreferenced=True, log=log)
            lock.unlink()
    except LockError:
        return  # a restore test is using it right now


def _drop_lock(vmid: int) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        conf.delete("lock")
        conf.delete("protection")
        store.save(conf)


def _quiet(_line: str) -> None:
    """A guard's log: its command, and whoever read its output, are gone."""


def free_vmid(first: int, last: int) -> int:
    for vmid in range(first, last + 1):
        if (
            store.load_or_none(vmid) is None
            and not paths.lxc_dir(vmid).exists()
            and not marker(vmid).exists()
        ):
            return vmid
    raise AlreadyExistsError(f"no free VMID in {first}-{last}")


def _strip(vmid: int) -> None:
    with config_lock(vmid):
        conf = store.load(vmid)
        for key in list(conf.keys()):
            bind_or_dev = key.startswith("mp") and (conf.get_raw(key) or "").split(",")[
                0
            ].startswith("/")
            if key in _DROP_KEYS or (key.startswith("net") and key[3:].isdigit()) or bind_or_dev:
                conf.delete(key)
        store.save(conf)


def _run_check(vmid: int, command: Sequence[str], log: Log) -> None:
    argv = lxcapi.attach_argv(vmid, list(command), keep_env=False)
    try:
        proc = subprocess.run(
            argv, env=lxcapi.attach_env(), capture_output=True, timeout=CHECK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise StateError(f"check command timed out after {CHECK_TIMEOUT:.0f}s") from None
    for line in proc.stdout.decode(errors="replace").splitlines()[-20:]:
        log(f"check: {line}")
    if proc.returncode != 0:
        raise StateError(f"check command failed with exit code {proc.returncode}")


def _attempt(test: RestoreTest, vmid: int, log: Log) -> None:
    # unprivileged whatever the backup says: the archive is untrusted, and a privileged
    # container's init would run as the host's root (its config's features with it)
    req = RestoreRequest(
        vmid=vmid, archive=test.volid, storage=test.storage, unique=True, unprivileged=True
    )
    restore(req, log)
    # a signal noted in the restore's last steps or in the start (held work) was kept for later:
    # it ends the test here, where the container is whole and the cleanup can remove it
    signals.raise_if_interrupted()
    _strip(vmid)
    lifecycle.start(vmid, log=log)
    signals.raise_if_interrupted()
    if not lxcapi.wait_state(vmid, "RUNNING", test.timeout):
        raise StateError(f"CT {vmid} did not reach 'running' within {test.timeout:.0f}s")
    log(f"CT {vmid} is running")
    if test.check:
        _run_check(vmid, test.check, log)


def _cleanup(vmid: int, log: Log) -> None:
    if store.load_or_none(vmid) is None:
        return  # restore failed and removed what it had made
    try:
        destroy(vmid, force=True, log=log)
    except CtkitError as err:
        log(f"unable to destroy throwaway CT {vmid} - {err}")
        raise


def restore_test(test: RestoreTest, log: Log = print) -> int:
    """Run the test; returns the throwaway VMID used. Raises VerifyError when it fails."""
    backup = locate(test.volid)
    with contextlib.ExitStack() as stack:
        # one choice at a time: two tests never pick the same id or clean up each other's
        with flock(paths.run_dir() / "restore-test.lock", CHOOSE_TIMEOUT):
            recover_stale(*test.vmid_range, log)
            vmid = free_vmid(*test.vmid_range)
            lock = marker(vmid)
            stack.enter_context(flock(lock, 0))
        stack.callback(lock.unlink, missing_ok=True)
        # killed outright, the test leaves its container running (its check too) and its
        # volumes mounted: the guard removes them at once, as the next test would
        stack.enter_context(guarding(functools.partial(_recover, vmid, _quiet)))
        stack.enter_context(interruptible())
        _run_test(test, backup.path, vmid, log)
    return vmid


def _run_test(test: RestoreTest, archive: Path, vmid: int, log: Log) -> None:
    log(f"restore test of '{test.volid}' as CT {vmid} on storage '{test.storage}'")
    started = time.monotonic()
    checked = {"vmid": vmid, "storage": test.storage, "check": " ".join(test.check or [])}
    error: str | None = None
    try:
        try:
            _attempt(test, vmid, log)
        finally:
            with signals.held():  # a TERM that ended the test must not cut its cleanup short
                _cleanup(vmid, log)
    except CtkitError as err:
        error = f"restore test of '{test.volid}' failed: {err}"
    checked["seconds"] = round(time.monotonic() - started, 1)
    state = "failed" if error else "ok"
    record(archive, Verification("restore-test", state, now(), checked, error))
    if error:
        raise VerifyError(error)
    log(f"restore test of '{test.volid}' passed; CT {vmid} destroyed")
