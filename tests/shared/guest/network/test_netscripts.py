"""Red Hat network-scripts (guest-setup.md C.4)."""

from __future__ import annotations

from shared.guest.network.common import Nic
from shared.guest.network.netscripts import render_ifcfg, update_sysconfig_network

UUID = "00000000-0000-0000-0000-000000000000"
DNS = (["8.8.8.8", "8.8.8.9"], ["proxmox.com"])


def test_dhcp_example() -> None:
    ifcfg, routes, routes6 = render_ifcfg(Nic("eth0", ip="dhcp"), UUID, *DNS)
    assert ifcfg == (
        f"DEVICE=eth0\nONBOOT=yes\nUUID={UUID}\nBOOTPROTO=dhcp\n"
        "DNS1=8.8.8.8\nDNS2=8.8.8.9\nDOMAIN=proxmox.com\n"
    )
    assert routes == routes6 == ""


def test_v6_variants() -> None:
    dhcp6, _, _ = render_ifcfg(Nic("eth0", ip6="dhcp"), UUID, [], [])
    assert (
        dhcp6
        == f"DEVICE=eth0\nONBOOT=yes\nUUID={UUID}\nBOOTPROTO=none\nIPV6INIT=yes\nDHCPV6C=yes\n"
    )
    static, _, routes6 = render_ifcfg(Nic("eth0", ip6="2000::1/64", gw6="2000::ff"), UUID, [], [])
    assert static is not None and "IPV6_DEFAULTGW=2000::ff\n" in static and routes6 == ""
    off, _, routes6 = render_ifcfg(Nic("eth0", ip6="2000::1/64", gw6="20ff::1"), UUID, [], [])
    assert off is not None and "IPV6_DEFAULTGW" not in off
    assert routes6 == "20ff::1 dev eth0\ndefault via 20ff::1 dev eth0\n"


def test_nic_without_anything_is_skipped() -> None:
    assert render_ifcfg(Nic("eth2"), UUID, [], []) == (None, "", "")
    assert render_ifcfg(Nic("eth2", ip="manual"), UUID, [], [])[0] is None
    # with DNS data the file is still written, as upstream does (BOOTPROTO empty)
    text = render_ifcfg(Nic("eth2"), UUID, ["1.1.1.1"], [])[0]
    assert text is not None and "BOOTPROTO=\nDNS1=1.1.1.1\n" in text


def test_sysconfig_network_flags() -> None:
    assert update_sysconfig_network("", True, False) == "NETWORKING=yes\n"
    assert update_sysconfig_network("NETWORKING=no\nX=1\n", True, True) == (
        "NETWORKING=yes\nX=1\nNETWORKING_IPV6=yes\n"
    )
    assert update_sysconfig_network("NETWORKING_IPV6=no\n", False, True) == "NETWORKING_IPV6=yes\n"
