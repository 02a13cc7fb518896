"""Rate limits and link state of a container's host-side veth (Proxmox's ``rate`` and
``link_down`` of ``netN``).

Shaping follows Proxmox (``PVE::Network::tap_rate_limit``): an ingress policer and an htb root
class, both at ``rate`` MB/s; the link state goes through pyroute2.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from ..errors import CommandError

MB = 1024 * 1024


def _tc(args: Sequence[str], *, check: bool = True) -> None:
    proc = subprocess.run(["tc", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise CommandError(f"command 'tc {' '.join(args)}' failed: {detail}")


def set_rate(ifname: str, rate_mbs: float | None) -> list[str]:
    """Limit both directions of ``ifname`` to ``rate_mbs`` MB/s (None/0 removes the limit).

    Returns warnings: the container-to-host direction needs the kernel's police action
    (``act_police``); a kernel without it still gets the host-to-container limit.
    """
    # removing what is not there fails: expected
    _tc(["qdisc", "del", "dev", ifname, "ingress"], check=False)
    _tc(["qdisc", "del", "dev", ifname, "root"], check=False)
    if not rate_mbs:
        return []
    rate = int(rate_mbs * MB)
    burst = max(rate // 8, 1 << 20)
    _tc(["qdisc", "add", "dev", ifname, "root", "handle", "1:", "htb", "default", "1"])
    _tc(["class", "add", "dev", ifname, "parent", "1:", "classid", "1:1", "htb",
         "rate", f"{rate}bps", "burst", f"{burst}b"])  # fmt: skip
    try:
        _tc(["qdisc", "add", "dev", ifname, "handle", "ffff:", "ingress"])
        _tc(["filter", "add", "dev", ifname, "parent", "ffff:", "prio", "50", "basic",
             "police", "avrate", f"{rate}bps", "drop"])  # fmt: skip
    except CommandError as err:
        _tc(["qdisc", "del", "dev", ifname, "ingress"], check=False)
        return [f"{ifname}: no rate limit for traffic from the container ({err})"]
    return []


def set_link(ifname: str, up: bool) -> None:
    from pyroute2 import IPRoute  # a third of a second to import: only when a link is touched

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise CommandError(f"network interface '{ifname}' does not exist")
        ipr.link("set", index=idx[0], state="up" if up else "down")


def link_mtu(ifname: str) -> int | None:
    """The MTU of a host interface (a bridge), or None when there is no such interface."""
    from pyroute2 import IPRoute  # as in set_link

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        mtu = ipr.get_links(idx[0])[0].get_attr("IFLA_MTU")
        return int(mtu) if mtu is not None else None
