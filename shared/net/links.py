"""Questions about host network interfaces, asked over netlink (the caller's network namespace;
``/sys/class/net`` may show another one)."""

from __future__ import annotations

from pyroute2 import IPRoute


def is_bridge(ifname: str) -> bool:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return False
        info = ipr.get_links(idx[0])[0].get_attr("IFLA_LINKINFO")
        return info is not None and info.get_attr("IFLA_INFO_KIND") == "bridge"
