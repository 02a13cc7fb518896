"""openSUSE ifcfg/ifroute (guest-setup.md C.5)."""

from __future__ import annotations

from shared.guest.network.common import Nic
from shared.guest.network.suse import render_suse


def test_slaac_alone_writes_nothing() -> None:
    assert render_suse(Nic("eth0", ip6="auto")) == (None, "")


def test_dual_stack_routes() -> None:
    nic = Nic("eth0", ip="1.2.3.4/24", gw="4.3.2.1", ip6="2001:1::/64", gw6="20ff::1")
    ifcfg, routes = render_suse(nic)
    assert (
        ifcfg == "STARTMODE=onboot\nBOOTPROTO=static\nIPADDR_1=1.2.3.4/24\nIPADDR_2=2001:1::/64\n"
    )
    assert routes == (
        "4.3.2.1 0.0.0.0 255.255.255.255 eth0\ndefault 4.3.2.1 0.0.0.0 eth0\n"
        "20ff::1/128 - - eth0\ndefault 20ff::1 - eth0\n"
    )


def test_dhcp_and_manual() -> None:
    assert (
        render_suse(Nic("eth0", ip="dhcp", ip6="dhcp"))[0] == "STARTMODE=onboot\nBOOTPROTO=dhcp\n"
    )
    assert render_suse(Nic("eth0", ip6="dhcp"))[0] == "STARTMODE=onboot\nBOOTPROTO=dhcp6\n"
    assert render_suse(Nic("eth0", ip="manual"))[0] == "STARTMODE=manual\nBOOTPROTO=static\n"
    assert render_suse(Nic("eth0"))[0] == "STARTMODE=manual\nBOOTPROTO=static\n"
