"""Finish a guest-initiated reboot: wait until LXC has stopped the CT, then start it afresh."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import CtkitError, LockError

# The locks a running guest is held under while it may reboot itself: the restart goes ahead
# under them, as Proxmox's does (LXC's own start, which never reads the config's lock). A
# stop-mode backup's lock is not one: that backup starts the guest itself once it is done.
RUNNING_LOCKS = ("backup", "snapshot", "snapshot-delete", "disk", "fstrim")
LOCK_WAIT = 6 * 3600.0  # under any other lock: waited for as long as its owner lives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctkit-restart")
    parser.add_argument("--root", default=None)
    parser.add_argument("vmid", type=int)
    args = parser.parse_args(argv)
    if args.root:
        os.environ["CTKIT_ROOT"] = args.root
    from . import lxcapi

    # the monitor re-runs pre-start (which refuses the reboot) before it exits
    deadline = time.monotonic() + 60
    while lxcapi.monitor_alive(args.vmid) and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = time.monotonic() + LOCK_WAIT
    failures = 0
    while failures < 5:
        try:
            if _start(args.vmid):
                return 0
            if time.monotonic() > deadline:
                print(f"CT {args.vmid} not started: still locked after {LOCK_WAIT:g} s",
                      file=sys.stderr)  # fmt: skip
                return 1
        except CtkitError as err:
            if "already running" in str(err):
                return 0
            failures += 1
            print(f"restart of CT {args.vmid} failed (attempt {failures}): {err}", file=sys.stderr)
        time.sleep(1)
    return 1


def _start(vmid: int) -> bool:
    """Start the CT unless a lock must first go (False: wait and ask again)."""
    from .. import owner as owners
    from ..ctconfig import store
    from . import lifecycle

    try:
        lifecycle.start(vmid)  # pct start's own rule on locks
        return True
    except LockError:
        lock = store.load(vmid).lock
        holder = owners.read(vmid)
        live = holder is not None and owners.alive(holder)
        if lock in RUNNING_LOCKS and not (live and holder is not None and holder.mode == "stop"):
            lifecycle.start(vmid, skiplock=True)
            return True
        if not live:  # nobody will drop it: say so
            raise
    return False


if __name__ == "__main__":
    raise SystemExit(main())
