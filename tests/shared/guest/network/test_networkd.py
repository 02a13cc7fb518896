"""systemd-networkd files (guest-setup.md C.1)."""

from __future__ import annotations

from shared.guest.network.common import Nic
from shared.guest.network.networkd import render_networkd

HEAD = "[Match]\nName = eth0\n\n[Network]\nDescription = Interface eth0 autoconfigured by PVE\n"


def test_c1a_static_v4_with_slaac() -> None:
    nic = Nic("eth0", ip="192.168.1.10/24", gw="192.168.1.1", ip6="auto")
    assert render_networkd(nic) == HEAD + (
        "Address = 192.168.1.10/24\nGateway = 192.168.1.1\nDHCP = no\nIPv6AcceptRA = true\n"
    )


def test_c1b_dhcp_modes() -> None:
    both = render_networkd(Nic("eth0", ip="dhcp", ip6="dhcp"))
    assert both.endswith("DHCP = yes\nIPv6AcceptRA = true\n")
    assert render_networkd(Nic("eth0", ip="dhcp")).endswith("DHCP = ipv4\nIPv6AcceptRA = false\n")
    assert render_networkd(Nic("eth0", ip6="dhcp")).endswith("DHCP = ipv6\nIPv6AcceptRA = true\n")
    assert render_networkd(Nic("eth0", ip="manual")) == HEAD + "DHCP = no\nIPv6AcceptRA = false\n"


def test_c1c_unreachable_v4_gateway_route() -> None:
    text = render_networkd(Nic("eth0", ip="10.0.0.100/32", gw="11.0.0.1"))
    assert text == HEAD + (
        "Address = 10.0.0.100/32\nGateway = 11.0.0.1\nDHCP = no\nIPv6AcceptRA = false\n"
        "\n[Route]\nDestination = 11.0.0.1/32\nScope = link\n"
    )


def test_c1d_v6_gateways() -> None:
    text = render_networkd(Nic("eth0", ip6="fd00::5/64", gw6="fd00:1::1"))
    assert text == HEAD + (
        "Address = fd00::5/64\nGateway = fd00:1::1\nDHCP = no\nIPv6AcceptRA = false\n"
        "\n[Route]\nDestination = fd00:1::1/128\nScope = link\n"
    )
    link_local = render_networkd(Nic("eth0", ip6="fd00::5/64", gw6="fe80::1"))
    assert "[Route]" not in link_local
    # a static gateway switches router advertisements off even with ip6=auto
    assert "IPv6AcceptRA = false" in render_networkd(Nic("eth0", ip6="auto", gw6="fe80::1"))
