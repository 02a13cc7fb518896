"""Rate limits and link state on a real veth pair made for the test."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from shared.errors import CommandError
from shared.net.shaping import set_link, set_rate


@pytest.fixture
def veth() -> Iterator[str]:
    name = f"ctkv{random.randrange(10**6):06d}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
        try:
            yield name
        finally:
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


def _tc(*args: str) -> str:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=True).stdout


def test_rate_limit_set_changed_and_removed(veth: str) -> None:
    set_rate(veth, 5)
    assert "rate 41943Kbit" in _tc("class", "show", "dev", veth)
    set_rate(veth, 10)
    assert "rate 83886Kbit" in _tc("class", "show", "dev", veth)
    assert set_rate(veth, None) == []
    assert "htb" not in _tc("qdisc", "show", "dev", veth)


def test_link_state(veth: str) -> None:
    set_link(veth, up=False)
    with IPRoute() as ipr:
        assert not ipr.get_links(ipr.link_lookup(ifname=veth)[0])[0]["flags"] & 1
    set_link(veth, up=True)
    with IPRoute() as ipr:
        assert ipr.get_links(ipr.link_lookup(ifname=veth)[0])[0]["flags"] & 1
    with pytest.raises(CommandError, match="does not exist"):
        set_link("ctk-missing0", up=True)
