"""Finish a guest-initiated reboot: wait until LXC has stopped the CT, then start it afresh."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import CtkitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctkit-restart")
    parser.add_argument("--root", default=None)
    parser.add_argument("vmid", type=int)
    args = parser.parse_args(argv)
    if args.root:
        os.environ["CTKIT_ROOT"] = args.root
    from . import lifecycle, lxcapi

    # the monitor re-runs pre-start (which refuses the reboot) before it exits
    deadline = time.monotonic() + 60
    while lxcapi.monitor_alive(args.vmid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for attempt in range(5):
        try:
            lifecycle.start(args.vmid)
            return 0
        except CtkitError as err:
            if "already running" in str(err):
                return 0
            print(
                f"restart of CT {args.vmid} failed (attempt {attempt + 1}): {err}", file=sys.stderr
            )
            time.sleep(1)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
