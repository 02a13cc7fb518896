"""Bridges a network test makes for itself (198.18.0.0/15), and what it asks of interfaces."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from pyroute2 import IPRoute


@contextlib.contextmanager
def made_bridge(address: str) -> Iterator[str]:
    """A bridge of a random name with ``address``/24, up; deleted afterwards."""
    name = f"ctkhp{random.randrange(10**5):05d}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        idx = ipr.link_lookup(ifname=name)[0]
        try:
            ipr.addr("add", index=idx, address=address, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            yield name
        finally:
            ipr.link("del", index=idx)


def master_of(ifname: str) -> str | None:
    """The bridge ``ifname`` is plugged into (None: none)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        assert idx, f"no interface {ifname}"
        master = ipr.get_links(idx[0])[0].get_attr("IFLA_MASTER")
        return ipr.get_links(master)[0].get_attr("IFLA_IFNAME") if master else None


def link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=ifname))
