"""Network hot-plug on a running container, on a bridge of this test's own (198.18.0.0/15).

Checked from inside (``ip addr``, ``ip route``, a ping across the bridge, the guest's network
file) and on the host (bridge port, VLAN, qdisc, link state).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from shared.runtime.lxcconf import veth_name
from tests.pct.bridges import link_exists as _exists
from tests.pct.bridges import made_bridge as _bridge
from tests.pct.bridges import master_of as _master
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc


@pytest.fixture
def subnet() -> int:
    return random.randrange(100, 200)


@pytest.fixture
def bridge(subnet: int) -> Iterator[str]:
    with _bridge(f"198.18.{subnet}.1") as name:
        yield name


def _host(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _vlan_filtering(bridge: str) -> bool:
    proc = subprocess.run(["ip", "link", "set", bridge, "type", "bridge", "vlan_filtering", "1"],
                          capture_output=True, check=False)  # fmt: skip
    return proc.returncode == 0


def test_add_change_and_remove_an_interface(
    pct: Pct,
    vmid: int,
    debian_template: Path,
    bridge: str,
    subnet: int,
    conf_text: Callable[[int], str],
) -> None:
    with _bridge(f"198.19.{subnet}.1") as bridge2:
        _add_change_remove(pct, vmid, debian_template, bridge, bridge2, subnet, conf_text)


def _add_change_remove(
    pct: Pct,
    vmid: int,
    debian_template: Path,
    bridge: str,
    bridge2: str,
    subnet: int,
    conf_text: Callable[[int], str],
) -> None:
    net = f"198.18.{subnet}"
    pct("create", vmid, debian_template, "--rootfs", "local:0")
    pct("start", vmid)
    veth = f"veth{vmid}i0"
    # add: veth on the bridge with its rate limit, address and default route inside
    pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},ip={net}.2/24,gw={net}.1,rate=5")
    text = conf_text(vmid)
    assert "pve:pending" not in text
    line = next(ln for ln in text.splitlines() if ln.startswith("net0:"))
    mac = line.split("hwaddr=")[1].split(",")[0]
    assert _master(veth) == bridge and "htb" in _host("tc", "qdisc", "show", "dev", veth)
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet {net}.2/24" in inside and mac.lower() in inside
    assert f"default via {net}.1 dev eth0" in pct("exec", vmid, "--", "ip", "route").out
    pct("exec", vmid, "--", "ping", "-c", "1", "-W", "2", f"{net}.1")
    interfaces = pct("exec", vmid, "--", "cat", "/etc/network/interfaces").out
    assert f"address {net}.2/24" in interfaces
    # change the address (no hwaddr given: the MAC stays), drop the rate limit
    pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},ip={net}.3/24,gw={net}.1")
    assert f"hwaddr={mac}" in conf_text(vmid) and "pve:pending" not in conf_text(vmid)
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet {net}.3/24" in inside and f"{net}.2/" not in inside
    assert "htb" not in _host("tc", "qdisc", "show", "dev", veth)
    pct("exec", vmid, "--", "ping", "-c", "1", "-W", "2", f"{net}.1")
    assert f"address {net}.3/24" in pct("exec", vmid, "--", "cat", "/etc/network/interfaces").out
    # a failed change leaves the old network working and the change pending
    res = pct("set", vmid, "--net0", f"name=eth0,bridge=ctkhpnone,ip={net}.3/24", check=False)
    assert res.rc != 0 and "unable to hotplug net0:" in res.err and "ctkhpnone" in res.err
    assert _master(veth) == bridge
    pct("exec", vmid, "--", "ping", "-c", "1", "-W", "2", f"{net}.1")
    pct("set", vmid, "--revert", "net0")
    # a VLAN tag needs a VLAN-aware bridge (this kernel has none): refused, nothing changed
    if _vlan_filtering(bridge):
        pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},ip={net}.3/24,tag=7")
        vlans = _host("bridge", "vlan", "show", "dev", veth)
        assert "7 PVID" in vlans.replace("\n", " ")
    else:
        res = pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},ip={net}.3/24,tag=7",
                  check=False)  # fmt: skip
        assert res.rc != 0 and "needs a VLAN-aware bridge" in res.err
        pct("set", vmid, "--revert", "net0")
    # link_down re-plugs the host side, down
    pct("set", vmid, "--net0", f"name=eth0,bridge={bridge},ip={net}.3/24,link_down=1")
    assert "state DOWN" in _host("ip", "link", "show", veth) and _master(veth) == bridge
    # another bridge and MTU, live
    pct("set", vmid, "--net0", f"name=eth0,bridge={bridge2},ip={net}.3/24,mtu=1400")
    assert _master(veth) == bridge2 and "mtu 1400 " in _host("ip", "link", "show", veth)
    assert "mtu 1400 " in pct("exec", vmid, "--", "ip", "link", "show", "eth0").out
    # a change that fails inside the container (IPv6 is off there) after the host side was
    # changed: the live interface goes back to what the config says
    pct("exec", vmid, "--", "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    res = pct("set", vmid, "--net0",
              f"name=eth0,bridge={bridge},ip={net}.5/24,ip6=2001:db8::5/64,mtu=1400",
              check=False)  # fmt: skip
    assert res.rc != 0 and "unable to hotplug net0:" in res.err, res.err
    assert _master(veth) == bridge2
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet {net}.3/24" in inside and f"{net}.5/" not in inside, inside
    pct("set", vmid, "--revert", "net0")
    pct("exec", vmid, "--", "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    # a new name or MAC: the interface is made again, as Proxmox does
    new_mac = "BC:24:11:00:A1:B2"
    pct("set", vmid, "--net0", f"name=eth9,bridge={bridge},hwaddr={new_mac},ip={net}.4/24")
    assert "pve:pending" not in conf_text(vmid)
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth9").out
    assert new_mac.lower() in inside and f"inet {net}.4/24" in inside
    assert "eth0" not in pct("exec", vmid, "--", "ip", "link").out
    assert _master(veth) == bridge
    pct("exec", vmid, "--", "ping", "-c", "1", "-W", "2", f"{net}.1")
    # a name that is taken inside: refused, and the interface as it was comes back
    res = pct("set", vmid, "--net0", f"name=lo,bridge={bridge},ip={net}.4/24", check=False)
    assert res.rc != 0 and "unable to hotplug net0:" in res.err
    assert "new net0: name=lo," in pct("pending", vmid).out
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth9").out
    assert new_mac.lower() in inside and f"inet {net}.4/24" in inside
    pct("exec", vmid, "--", "ping", "-c", "1", "-W", "2", f"{net}.1")
    pct("set", vmid, "--revert", "net0")
    # delete: gone on both sides
    pct("set", vmid, "--delete", "net0")
    assert "net0" not in conf_text(vmid) and not _exists(veth)
    assert "eth0" not in pct("exec", vmid, "--", "ip", "link").out
    pct("stop", vmid)


def test_ipv6_and_a_leftover_host_interface(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int
) -> None:
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    veth = f"veth{vmid}i1"
    # what an interrupted hot-plug could leave behind: the host side of the pair, unplugged
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer=f"ctkhp{subnet}x")
    v6 = f"2001:db8:{subnet}:"
    pct("set", vmid, "--net1", f"name=eth1,bridge={bridge},ip6={v6}:2/64,gw6={v6}:1")
    assert _master(veth) == bridge and not _exists(f"ctkhp{subnet}x")
    inside = pct("exec", vmid, "--", "ip", "-6", "addr", "show", "eth1").out
    assert f"inet6 2001:db8:{subnet}::2/64" in inside
    routes = pct("exec", vmid, "--", "ip", "-6", "route").out
    assert f"default via 2001:db8:{subnet}::1 dev eth1" in routes
    pct("stop", vmid)
    assert not _exists(veth)


def _ports(bridge: str) -> set[str]:
    with IPRoute() as ipr:
        master = ipr.link_lookup(ifname=bridge)[0]
        return {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links(master=master)}


def test_nets_whose_fixed_host_name_is_too_long_change_live(
    pct: Pct,
    vmid: int,
    busybox_template: Path,
    bridge: str,
    subnet: int,
    conf_text: Callable[[int], str],
) -> None:
    """veth<vmid>i10 of a 9-digit vmid has 16 characters: LXC names the host end at random, and
    hot-plug, looking it up by the fixed name, failed with "interface name ... is too long"
    and left every change of net10..net31 pending."""
    assert veth_name(vmid, 10) is None and len(str(vmid)) == 9
    net = f"198.18.{subnet}"
    nic = f"name=eth10,bridge={bridge},ip={net}.2/24"
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--net10", nic)
    pct("start", vmid)
    (host10,) = _ports(bridge)
    pct("set", vmid, "--net10", f"name=eth10,bridge={bridge},ip={net}.3/24,rate=5")
    assert "[pve:pending]" not in conf_text(vmid)
    assert f"inet {net}.3/24" in pct("exec", vmid, "--", "ip", "addr", "show", "eth10").out
    assert "htb" in _host("tc", "qdisc", "show", "dev", host10)
    # one added live gets a host name of its own
    pct("set", vmid, "--net11", f"name=eth11,bridge={bridge},ip={net}.4/24")
    assert "[pve:pending]" not in conf_text(vmid)
    (host11,) = _ports(bridge) - {host10}
    assert f"inet {net}.4/24" in pct("exec", vmid, "--", "ip", "addr", "show", "eth11").out
    pct("set", vmid, "--delete", "net10")
    assert "net10" not in conf_text(vmid) and not _exists(host10)
    assert _ports(bridge) == {host11}
    assert "eth10" not in pct("exec", vmid, "--", "ip", "link").out
    pct("set", vmid, "--delete", "net11")
    assert "net11" not in conf_text(vmid) and _ports(bridge) == set()
    pct("stop", vmid)


def test_an_interface_a_killed_change_took_is_made_again(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int,
    conf_text: Callable[[int], str],
) -> None:  # fmt: skip
    """A change of net0 killed between the removal and the new interface left the container
    without one while the config named it; the next pct set of it then failed ('network
    interface ... does not exist') and stayed pending. Now it is made again as asked."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    value = f"name=eth0,bridge={bridge},hwaddr=BC:24:11:00:00:01,ip=198.18.{subnet}.20/24"
    pct("set", vmid, "--net0", value)
    veth = veth_name(vmid, 0)
    assert veth is not None and _exists(veth)
    _host("ip", "link", "del", veth)  # what the killed change left: no pair at all
    assert "eth0" not in pct("exec", vmid, "--", "ip", "link").out
    pct("set", vmid, "--net0", value.replace(".20/24", ".21/24"))
    assert "pve:pending" not in conf_text(vmid)
    assert _master(veth) == bridge
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet 198.18.{subnet}.21/24" in inside
    # the peer renamed inside, as a replace killed before its last step leaves it
    pct("exec", vmid, "--", "ip", "link", "set", "eth0", "down")
    pct("exec", vmid, "--", "ip", "link", "set", "eth0", "name", "vhp0123456789")
    pct("set", vmid, "--net0", value)
    inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet 198.18.{subnet}.20/24" in inside and "pve:pending" not in conf_text(vmid)
    assert "vhp0123456789" not in pct("exec", vmid, "--", "ip", "link").out
    pct("stop", vmid)


def test_a_change_interrupted_while_plugged_stays_pending(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int,
    conf_text: Callable[[int], str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The config was saved only after the hot-plug: a pct set killed while it plugged the
    interface left no trace of the change (no pending entry), whatever it had done live."""
    from pct.ops.setconf import set_config
    from shared.net import hotplug

    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)

    def killed(*_args: object) -> list[str]:
        raise KeyboardInterrupt  # stands for the kill: nothing after it runs

    real_add = hotplug.add
    monkeypatch.setattr(hotplug, "add", killed)
    value = f"name=eth0,bridge={bridge},ip=198.18.{subnet}.20/24"
    with pytest.raises(KeyboardInterrupt):
        set_config(vmid, {"net0": value}, log=lambda _line: None)
    pending = conf_text(vmid).split("[pve:pending]")
    assert len(pending) == 2 and f"bridge={bridge}" in pending[1], conf_text(vmid)
    monkeypatch.setattr(hotplug, "add", real_add)
    pct("set", vmid, "--net0", pending[1].split("net0: ")[1].splitlines()[0])
    assert "pve:pending" not in conf_text(vmid)
    assert f"inet 198.18.{subnet}.20/24" in pct("exec", vmid, "--", "ip", "addr").out
    pct("stop", vmid)


def test_what_a_killed_hotplug_of_net10_left_is_replaced(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int, ctroot: Path,
    conf_text: Callable[[int], str],
) -> None:  # fmt: skip
    """net10 of a 9-digit vmid had a random host name: a hot-plug killed before its peer went
    into the container left the pair on the host, found by nothing ever after; killed once the
    interface was live but before the save, every later pct set of it failed ('File exists').
    The host name is the interface's own now: the next hot-plug replaces what was left."""
    from shared.net.hotplug import hashed_veth_name

    assert veth_name(vmid, 10) is None
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    host, left = hashed_veth_name(vmid, 10), f"vhp{subnet}left"
    try:
        with IPRoute() as ipr:  # killed before the move: the pair, on the host
            ipr.link("add", ifname=host, kind="veth", peer=left)
        nic = f"name=eth10,bridge={bridge},ip=198.18.{subnet}.2/24"
        pct("set", vmid, "--net10", nic)
        assert "pve:pending" not in conf_text(vmid) and not _exists(left)
        assert _ports(bridge) == {host}
        # killed after the interface was live, before the save: the config has it pending only
        conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
        line = next(ln for ln in conf_text(vmid).splitlines() if ln.startswith("net10: "))
        conf.write_text(conf_text(vmid).replace(f"{line}\n", "") + f"\n[pve:pending]\n{line}\n")
        pct("set", vmid, "--net10", nic.replace(".2/24", ".3/24"))
        assert "pve:pending" not in conf_text(vmid) and _ports(bridge) == {host}
        inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth10").out
        assert f"inet 198.18.{subnet}.3/24" in inside and f"198.18.{subnet}.2/" not in inside
        pct("stop", vmid)
        assert not _exists(host)
    finally:  # what a failure leaves on the host
        for name in (host, left):
            if _exists(name):
                _host("ip", "link", "del", name)


def test_a_refused_address_change_leaves_the_interface_as_it_was(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int,
    conf_text: Callable[[int], str],
) -> None:  # fmt: skip
    """A guest that does not configure its network (busybox here) has its interface down and
    without an address. A change of its address fails there (the default route cannot be set
    on a link that is down), and its undo added the config's old address, which the interface
    never had: a refused command changed the running container."""
    net = f"198.18.{subnet}"
    nic = f"name=eth0,bridge={bridge},ip={net}.2/24,gw={net}.1"
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--net0", nic)
    pct("start", vmid)
    before = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert "UP" not in before.split(">")[0] and f"inet {net}." not in before, before
    res = pct("set", vmid, "--net0", nic.replace(".2/24", ".3/24"), check=False)
    assert res.rc != 0 and "unable to hotplug net0" in res.err, res.text
    after = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
    assert f"inet {net}." not in after, after
    assert "ip=198.18" in conf_text(vmid).split("[pve:pending]")[1]  # the change stays pending
    pct("stop", vmid)


def test_a_bridge_that_is_missing_or_no_bridge_is_one_line_for_its_own_interface(
    pct: Pct, vmid: int, busybox_template: Path, bridge: str, subnet: int,
    conf_text: Callable[[int], str],
) -> None:  # fmt: skip
    """A bridge that was another interface ('lo') failed as 'netlink: Operation not
    supported', a missing one as 'net0: unable to hotplug net0: net0: bridge ...'; and a
    bridge gone from under one interface failed the hot-plug of every other one."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0")
    pct("start", vmid)
    for value, reason in (
        ("bridge=ctkhpmissing", "bridge 'ctkhpmissing' does not exist"),
        ("bridge=lo", "'lo' is not a Linux bridge"),
    ):
        res = pct("set", vmid, "--net0", f"name=eth0,{value}", check=False)
        assert res.rc == 2 and f"net0: unable to hotplug net0: {reason}\n" in res.err, res.err
        pct("set", vmid, "--revert", "net0")
    with _bridge(f"198.18.{subnet + 50}.1") as gone:
        pct("set", vmid, "--net0", f"name=eth0,bridge={gone},ip=198.18.{subnet + 50}.2/24")
    # net0's bridge is gone: net1 on a bridge that is there is plugged all the same
    pct("set", vmid, "--net1", f"name=eth1,bridge={bridge},ip=198.18.{subnet}.2/24")
    assert "pve:pending" not in conf_text(vmid)
    assert f"inet 198.18.{subnet}.2/24" in pct("exec", vmid, "--", "ip", "addr", "show", "eth1").out
    pct("stop", vmid)
