"""Containers on a real bridge: attachment, MAC, rate limit and link_down on the host side.

The bridge is this test's own, with addresses from 198.18.0.0/15; traffic stays on it.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"ctkbr{random.randrange(10**5):05d}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        idx = ipr.link_lookup(ifname=name)[0]
        try:
            ipr.addr("add", index=idx, address="198.18.7.1", prefixlen=24)
            ipr.link("set", index=idx, state="up")
            yield name
        finally:
            ipr.link("del", index=idx)


def _link(name: str) -> dict[str, object]:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        assert idx, f"no interface {name}"
        msg = ipr.get_links(idx[0])[0]
        master = msg.get_attr("IFLA_MASTER")
        return {
            "state": msg.get_attr("IFLA_OPERSTATE"),
            "flags_up": bool(msg["flags"] & 1),
            "master": ipr.get_links(master)[0].get_attr("IFLA_IFNAME") if master else None,
        }


def test_bridge_rate_limit_and_link_down(
    pct: Pct, ctroot: Path, vmid: int, debian_template: Path, bridge: str
) -> None:
    pct("create", vmid, debian_template, "--rootfs", "local:0",
        "--net0", f"name=eth0,bridge={bridge},ip=198.18.7.2/24,gw=198.18.7.1,rate=5",
        "--net1", f"name=eth1,bridge={bridge},link_down=1")  # fmt: skip
    conf = (ctroot / f"etc/pve/lxc/{vmid}.conf").read_text()
    net0 = next(line for line in conf.splitlines() if line.startswith("net0:"))
    mac = net0.split("hwaddr=")[1].split(",")[0]
    assert mac.startswith("BC:24:11:") and "type=veth" in net0
    pct("start", vmid)
    host0, host1 = f"veth{vmid}i0", f"veth{vmid}i1"
    assert _link(host0)["master"] == bridge
    assert _link(host1)["master"] == bridge
    assert _link(host0)["flags_up"] and not _link(host1)["flags_up"]
    qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host0], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "htb" in qdisc  # host -> container; container -> host needs act_police (not here)
    classes = subprocess.run(["tc", "class", "show", "dev", host0], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "rate 41943Kbit" in classes  # 5 MB/s = 41943040 bit/s
    # inside: the MAC, and the address the guest setup wrote for ifupdown
    out = pct("exec", vmid, "--", "cat", "/sys/class/net/eth0/address").out
    assert out.strip().upper() == mac
    interfaces = pct("exec", vmid, "--", "cat", "/etc/network/interfaces").out
    assert "iface eth0 inet static" in interfaces and "address 198.18.7.2/24" in interfaces
    # traffic on the test's own bridge only: configure by hand (busybox has no ifupdown)
    setup = "ip addr add 198.18.7.2/24 dev eth0 && ip link set eth0 up"
    pct("exec", vmid, "--", "sh", "-c", f"{setup} && ping -c 1 -W 2 198.18.7.1")
    res = pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},mtu=9000", check=False)
    assert res.rc == 2
    assert "net0: MTU size '9000' is bigger than bridge MTU '1500'" in res.err
    pct("stop", vmid)
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=host0)  # LXC removed the veth pair
