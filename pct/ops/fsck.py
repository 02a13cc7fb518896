"""``pct fsck``: check the file system of a stopped container's raw volume (or block device)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from shared import signals
from shared.ctconfig import store
from shared.ctconfig.mountpoints import MountPoint, check_volume_key
from shared.errors import CommandError, StateError
from shared.locks import config_lock
from shared.parentdeath import guarding_group, tied_to_parent
from shared.runtime import lxcapi
from shared.storage import loop
from shared.storage.api import volume_path
from shared.storage.volumes import clear_interrupted_check, volume_format

Log = Callable[[str], None]
STOP_WAIT = 30.0  # seconds a TERMed check gets to stop cleanly


def _stdout(msg: str) -> None:
    print(msg, flush=True)


def _target(mp: MountPoint) -> Path:
    if mp.type == "volume":
        fmt = volume_format(mp.volume)
        if fmt != "raw":
            raise StateError(f"unable to run fsck for '{mp.volume}' (format == {fmt})")
        image = volume_path(mp.volume)
        loop.wait_unused(image, loop.RELEASE_WAIT)  # a CT that stopped a moment ago lets go
        return image
    path = Path(mp.volume)
    # a path that is missing (the config came from another host) is no block device either
    if mp.type != "device" or not path.is_block_device():
        raise StateError(f"path '{path}' does not point to a block device")
    return path


def fsck(vmid: int, *, device: str = "rootfs", force: bool = False, log: Log = _stdout) -> None:
    """``fsck -a -l [-f] <image>`` under the config lock; errors that fsck repaired are fine
    (exit 1), anything it could not repair fails the command."""
    check_volume_key("device", device)
    with config_lock(vmid):
        conf = store.load(vmid)
        mp = next((m for m in conf.mountpoints() if m.key == device), None)
        if mp is None:
            raise StateError(f"cannot run command on non-existing mount point {device}")
        if lxcapi.is_running(vmid):
            raise StateError("cannot run fsck when container is running")
        store.check_lock(conf)  # stricter than Proxmox: a 'mounted' CT's volume is in use
        path = _target(mp)
        if mp.type == "volume" and clear_interrupted_check(mp.volume):
            log(f"cleared the mark of an interrupted e2fsck on '{mp.volume}'")
        argv = ["fsck", "-a", "-l", *(["-f"] if force else []), str(path)]
        rc, output = _checked(argv)
        for line in output.splitlines():
            log(line)
        if rc not in (0, 1):
            raise CommandError(f"command '{' '.join(argv)}' failed: exit code {rc}")
    sys.stdout.flush()


def _checked(argv: list[str]) -> tuple[int, str]:
    """Run fsck; (exit code, output). fsck runs the checker as a child of its own, and a TERM
    stops both cleanly (e2fsck leaves no mark). Interrupted, this command TERMs the two and
    waits; killed, its guard does (:func:`guarding_group`): a kill of fsck alone, or a TERM fsck
    did not pass on, left the checker writing the image after the command had ended, and the
    next mount failed. fsck also gets its parent-death TERM, should the guard be killed too."""
    with subprocess.Popen(
        tied_to_parent(argv, "TERM"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,  # a Ctrl-C reaches this command, which stops fsck: not both at once
    ) as proc, guarding_group(proc.pid, STOP_WAIT):  # fmt: skip
        output, _ = signals.communicate(proc, stop_wait=STOP_WAIT)
    return proc.returncode, output
