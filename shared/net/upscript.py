"""LXC's ``lxc.net.N.script.up`` for ctkit containers: rate limit and link state of the veth.

LXC runs ``<python> -m shared.net.upscript --root R --index N <vmid> net up veth <host-if>``
after it attached the host side to the bridge (``lxc.net.N.link``).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import CtkitError


def apply(vmid: int, index: int, ifname: str) -> None:
    from ..ctconfig import store
    from ..ctconfig.options import NET_SCHEMA
    from .shaping import set_link, set_rate

    conf = store.load(vmid)
    text = conf.get_raw(f"net{index}")
    if text is None:
        return
    net = NET_SCHEMA.parse(text, lenient=True)
    rate = net.get("rate")
    for warning in set_rate(ifname, float(rate) if rate else None):
        print(f"WARN: {warning}", file=sys.stderr)
    if net.get("link_down"):
        set_link(ifname, up=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctkit-net-up")
    parser.add_argument("--root", default=None)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("words", nargs="*")
    args = parser.parse_args(argv)
    # <vmid> net up veth [...] <host-side interface>: LXC's word count varies between versions
    if len(args.words) < 2:
        print(f"net{args.index}: unexpected arguments {args.words}", file=sys.stderr)
        return 1
    args.name, args.ifname = args.words[0], args.words[-1]
    if args.root:
        os.environ["CTKIT_ROOT"] = args.root
    try:
        apply(int(args.name), args.index, args.ifname)
    except (CtkitError, OSError, ValueError) as err:
        print(f"net{args.index}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
