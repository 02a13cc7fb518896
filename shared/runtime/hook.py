"""LXC's pre-start and post-stop hooks for ctkit containers.

LXC runs ``<python> -m shared.runtime.hook --root <root> <vmid> lxc <phase>``. With
``lxc.monitor.unshare = 1`` both phases run in the monitor's private mount namespace, so the
mounts made here are invisible to the host and vanish with the monitor.

- pre-start: re-check the lock, mount rootfs and mount points at ``<lxcpath>/<vmid>/rootfs``,
  prepare passthrough device nodes, run the guest's per-start setup. A guest-initiated reboot
  re-enters pre-start with
  ``LXC_TARGET=reboot``: refuse it, so LXC stops, and let the restart helper started by
  post-stop start the container afresh with its current config (hot-plugged changes kept).
- post-stop: unmount, apply pending changes, hookscript ``post-stop``, reboot handling.
Errors go to stderr and to ``run/ctkit/ct-<vmid>.hook-error``, which ``pct start`` prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .. import paths
from ..ctconfig import store
from ..ctconfig.config import Config
from ..ctconfig.mountpoints import MountPoint
from ..ctconfig.options import MOUNTED_LOCK
from ..errors import CtkitError, LockError
from ..locks import config_lock
from . import entrypoints

HOOK_LOCK_WAIT = 1.0  # seconds the post-stop hook waits for the config lock


def pre_start(vmid: int) -> None:
    from ..guest.setup import GuestSetup
    from .guestview import config_idmap, config_root_ids, guest_config
    from .lifecycle import skiplock_file, warnings_file
    from .mounts import mount_all
    from .mpstage import stage_all
    from .passthrough import device, prepare_start

    if os.environ.get("LXC_TARGET") == "reboot":
        raise CtkitError(
            "guest requested a reboot: restarting the container with its current config"
        )
    conf = store.load(vmid)
    if not skiplock_file(vmid).exists() and conf.lock not in (None, MOUNTED_LOCK):
        store.check_lock(conf)
    rootfs = paths.lxc_rootfs(vmid)
    devices = [device(opts) for opts in conf.devices().values()]
    mount_all(conf, rootfs, root_ids=config_root_ids(conf), after=idmap_after(conf))
    prepare_start(vmid, devices, config_idmap(conf))
    if conf.get("ostype") != "unmanaged":
        setup = GuestSetup.for_rootfs(rootfs, guest_config(conf))
        setup.pre_start()
        if setup.warnings:
            warnings_file(vmid).write_text("".join(f"{w}\n" for w in setup.warnings))
    stage_all(conf, rootfs)  # after the guest's setup, which sees them in place


def idmap_after(conf: Config) -> Callable[[MountPoint, Path], None]:
    """Turns each mount point with ``idmap=`` into an id-mapped mount once it is mounted."""
    from .guestview import config_idmap
    from .idmapmount import mount_userns, remount_idmapped, wanted

    ct_map = config_idmap(conf)

    def after(mp: MountPoint, where: Path) -> None:
        if mp.options.get("idmap") and not ct_map:
            print(f"WARN: '{mp.key}' - ignoring 'idmap' option unsupported by privileged "
                  "container", file=sys.stderr)  # fmt: skip
        if wanted(mp, ct_map):
            with mount_userns(mp, ct_map, None) as userns:
                remount_idmapped(where, userns, mp.key)

    return after


def post_stop(vmid: int, target: str | None) -> None:
    from . import hookscript, stopper
    from .mounts import unmount_below
    from .mpstage import unstage_all

    for problem in [*unmount_below(paths.lxc_rootfs(vmid)), *unstage_all(vmid)]:
        print(f"WARN: {problem}", file=sys.stderr)
    conf = store.load_or_none(vmid)
    if conf is None:
        return
    if stopper.current(vmid) is None:  # else the stopper holds the lock, and applies them
        conf = _apply_pending(vmid) or conf
    hookscript.run(conf, "post-stop", fatal=False)
    if target == "reboot":
        spawn_restart(vmid)


def _apply_pending(vmid: int) -> Config | None:
    """The config with its pending changes applied, or None when it stays locked."""
    from .lifecycle import apply_pending_all

    try:
        # briefly: a command that holds the lock may be asking this very monitor (busy with
        # this hook) for the CT's state, and it would wait on us as we wait on it
        with config_lock(vmid, timeout=HOOK_LOCK_WAIT):
            conf = store.load(vmid)
            if apply_pending_all(conf):
                store.save(conf)
            return conf
    except LockError:
        print(
            "WARN: config locked - pending changes are applied at the next start", file=sys.stderr
        )
        return None


def spawn_restart(vmid: int) -> None:
    """Start the detached helper that starts the CT again once LXC has let go of it."""
    log = paths.run_dir() / f"ct-{vmid}.restart.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = entrypoints.argv(entrypoints.RESTART, "--root", str(paths.root()), str(vmid))
    # LXC's hook variables (LXC_TARGET=reboot above all) must not reach the new start's hooks
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXC_")}
    with open(log, "ab") as out:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctkit-lxc-hook")
    parser.add_argument("--root", default=None)
    parser.add_argument("name")
    parser.add_argument("section")
    parser.add_argument("phase")
    args, _rest = parser.parse_known_args(argv)
    if args.root:
        os.environ["CTKIT_ROOT"] = args.root
    vmid = int(args.name)
    try:
        if args.phase == "pre-start":
            pre_start(vmid)
        elif args.phase == "post-stop":
            post_stop(vmid, os.environ.get("LXC_TARGET"))
    except Exception as err:
        text = str(err) if isinstance(err, CtkitError) else traceback.format_exc().strip()
        print(text, file=sys.stderr)
        with contextlib.suppress(OSError):
            from .lifecycle import hook_error_file

            hook_error_file(vmid).parent.mkdir(parents=True, exist_ok=True)
            hook_error_file(vmid).write_text(f"{args.phase} hook failed: {text}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
