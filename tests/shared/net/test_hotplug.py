"""Network hot-plug against a bare network namespace (a process the test starts with its own
netns), on a bridge of the test's own: plumbing, a failed plug leaving nothing, live changes."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from shared.errors import CtkitError
from shared.net import hotplug
from shared.runtime.lxcconf import veth_name

MAC = "BC:24:11:00:00:42"


@pytest.fixture
def netns_pid() -> Iterator[int]:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"ctkhp{random.randrange(10**5):05d}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        idx = ipr.link_lookup(ifname=name)[0]
        try:
            ipr.link("set", index=idx, state="up")
            yield name
        finally:
            ipr.link("del", index=idx)


def _inside(pid: int, *argv: str) -> str:
    cmd = ["nsenter", "-t", str(pid), "-n", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _host_link(name: str) -> str:
    cmd = ["ip", "link", "show", name]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def test_add_update_remove(netns_pid: int, bridge: str, vmid: int) -> None:
    veth = f"veth{vmid}i3"
    net = {"name": "eth3", "hwaddr": MAC, "bridge": bridge, "ip": "198.18.151.2/24",
           "gw": "198.18.151.1", "mtu": 1400}  # fmt: skip
    try:
        hotplug.add(vmid, 3, net, netns_pid)
        link = _inside(netns_pid, "ip", "link", "show", "eth3")
        assert MAC.lower() in link and "mtu 1400" in link and "UP" in link
        assert "inet 198.18.151.2/24" in _inside(netns_pid, "ip", "addr", "show", "eth3")
        assert "default via 198.18.151.1" in _inside(netns_pid, "ip", "route")
        assert f"master {bridge}" in _host_link(veth)
        # a gateway outside the subnet is reached on-link; a rate limit on the host side
        new = {**net, "ip": "198.18.152.2/24", "gw": "198.18.151.1", "rate": 2, "mtu": 1300}
        hotplug.update(vmid, 3, net, new, netns_pid)
        addrs = _inside(netns_pid, "ip", "addr", "show", "eth3")
        assert "198.18.152.2/24" in addrs and "198.18.151.2" not in addrs
        routes = _inside(netns_pid, "ip", "route")
        assert "default via 198.18.151.1" in routes and "198.18.151.1 dev eth3" in routes
        assert "mtu 1300" in _inside(netns_pid, "ip", "link", "show", "eth3")
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", veth], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert "htb" in qdisc
    finally:
        hotplug.remove(vmid, 3, net, netns_pid)
    assert not _exists(veth) and "eth3" not in _inside(netns_pid, "ip", "link")


def test_failed_plug_leaves_nothing(netns_pid: int, vmid: int) -> None:
    net = {"name": "eth0", "hwaddr": MAC, "bridge": "ctkhpabsent"}
    with pytest.raises(CtkitError, match="'ctkhpabsent' does not exist"):
        hotplug.add(vmid, 0, net, netns_pid)
    assert not _exists(f"veth{vmid}i0")
    assert "eth0" not in _inside(netns_pid, "ip", "link")


def test_failed_replug_restores_the_old_bridge(netns_pid: int, bridge: str, vmid: int) -> None:
    net = {"name": "eth0", "hwaddr": MAC, "bridge": bridge}
    try:
        hotplug.add(vmid, 0, net, netns_pid)
        with pytest.raises(CtkitError):
            hotplug.update(vmid, 0, net, {**net, "bridge": "ctkhpabsent"}, netns_pid)
        assert f"master {bridge}" in _host_link(f"veth{vmid}i0")
    finally:
        hotplug.remove(vmid, 0, net, netns_pid)


def test_a_long_named_host_side_is_found_only_where_the_host_agrees(
    netns_pid: int, bridge: str, vmid: int
) -> None:
    """veth<vmid>i10 of a 9-digit vmid is too long a name, so the host side is found as the peer
    of the container's interface; the container controls that interface, and a veth of its own
    into another of its namespaces names an index that on the host is some other interface
    (here: the test's bridge), which must never be taken for the host side."""
    assert veth_name(vmid, 10) is None
    net = {"name": "eth10", "hwaddr": MAC, "bridge": bridge}
    hotplug.add(vmid, 10, net, netns_pid)
    host = hotplug.host_end(vmid, 10, net, netns_pid)
    assert host is not None and host.startswith("veth") and f"master {bridge}" in _host_link(host)
    hotplug.remove(vmid, 10, net, netns_pid)
    assert not _exists(host) and "eth10" not in _inside(netns_pid, "ip", "link")
    other = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        with IPRoute() as ipr:
            bridge_index = ipr.link_lookup(ifname=bridge)[0]
        # (ip link honours "index" only for the first end; a moved link keeps its index)
        _inside(netns_pid, "ip", "link", "add", "x", "index", str(bridge_index), "type", "veth",
                "peer", "name", "eth10")  # fmt: skip
        _inside(netns_pid, "ip", "link", "set", "x", "netns", str(other.pid))
        assert f"{bridge_index}: x@" in _inside(other.pid, "ip", "-o", "link")
        assert hotplug.host_end(vmid, 10, net, netns_pid) is None
        hotplug.remove(vmid, 10, net, netns_pid)
        with pytest.raises(CtkitError, match=r"^no host side of net10 \(the container's 'eth10'\)"):
            hotplug.update(vmid, 10, net, {**net, "rate": 1}, netns_pid)
        assert _exists(bridge)
    finally:
        other.kill()
        other.wait()
