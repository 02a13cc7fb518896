"""/etc/network/interfaces (guest-setup.md C.6)."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.guest.network.common import Nic
from shared.guest.network.interfaces import remove_gateway_scripts, render_interfaces

LO = "auto lo\niface lo inet loopback\niface lo inet6 loopback\n\n"


def test_c6a_fresh_file() -> None:
    nic = Nic("eth0", ip="dhcp", ip6="fd00::5/64", gw6="fd00::1")
    for old in (None, ""):
        assert render_interfaces(old, [nic], cidr_style=True) == LO + (
            "auto eth0\niface eth0 inet dhcp\n\n"
            "iface eth0 inet6 static\n\taddress fd00::5/64\n\tgateway fd00::1\n\n"
        )


@pytest.mark.parametrize("method", ["auto", "dhcp"])
def test_c6b_v6_methods(method: str) -> None:
    text = render_interfaces(None, [Nic("eth0", ip6=method)], cidr_style=True)
    assert text == LO + f"auto eth0\niface eth0 inet6 {method}\n\n"


def test_no_managed_nic_leaves_file_alone() -> None:
    assert render_interfaces("anything\n", [Nic("eth0")], cidr_style=True) is None
    assert render_interfaces("anything\n", [], cidr_style=True) is None


def test_old_style_addresses() -> None:
    nic = Nic("eth0", ip="192.168.3.102/20", gw="192.168.2.1", ip6="fc00::89:c:1/96")
    text = render_interfaces("auto lo\niface lo inet loopback\n", [nic], cidr_style=False)
    assert text == (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n"
        "\taddress 192.168.3.102\n\tnetmask 255.255.240.0\n\tgateway 192.168.2.1\n\n"
        "iface eth0 inet6 static\n\taddress fc00::89:c:1\n\tnetmask 96\n\n"
    )


def test_c6d_unmanaged_stanzas_and_source_lines_survive() -> None:
    old = (
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
        "auto eth5\niface eth5 inet static\n\taddress 10.9.9.9/24\n\tmtu 9000\n\n"
        "auto eth0\niface eth0 inet static\n\taddress 1.1.1.1/24\n\tmtu 1400\n\n"
        "allow-hotplug eth6\niface eth6 inet dhcp\n"
    )
    text = render_interfaces(old, [Nic("eth0", ip="10.0.0.2/24", gw="10.0.0.1")], cidr_style=True)
    assert text == (
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
        "auto eth5\niface eth5 inet static\n\taddress 10.9.9.9/24\n\tmtu 9000\n\n"
        "auto eth0\niface eth0 inet static\n\taddress 10.0.0.2/24\n\tgateway 10.0.0.1\n"
        "\tmtu 1400\n\nallow-hotplug eth6\niface eth6 inet dhcp\n"
    )


def test_c6e_idempotent_with_routes_and_removed_family() -> None:
    nics = [
        Nic("eth1", ip="10.0.0.100/32", gw="11.0.0.1", ip6="fc00::1/64", gw6="fc00:1::ff"),
        Nic("eth0", ip="dhcp"),
    ]
    once = render_interfaces("# comment\n", nics, cidr_style=True)
    twice = render_interfaces(once, nics, cidr_style=True)
    assert once == twice
    assert once is not None
    assert once.count("auto eth1") == 1 and once.count("# --- BEGIN PVE ---") == 2
    # eth0 listed before eth1 when appended (sorted by name), after one blank separator
    assert once.index("auto eth0") < once.index("auto eth1")
    assert once.startswith(LO + "# comment\n\nauto eth0\n")
    # dropping ip6 removes the inet6 stanza and its marked route block
    fewer = render_interfaces(
        once, [Nic("eth1", ip="10.0.0.100/32", gw="11.0.0.1")], cidr_style=True
    )
    assert fewer is not None and "inet6" not in fewer.replace("lo inet6", "")
    assert fewer.count("# --- BEGIN PVE ---") == 1


def test_bad_v6_address() -> None:
    with pytest.raises(ConfigError, match="unable to parse ipv6 address/prefix"):
        render_interfaces(None, [Nic("eth0", ip6="fc00::1")], cidr_style=True)


def test_remove_gateway_scripts() -> None:
    legacy = [
        "post-up ip route add 1.1.1.1 dev eth0",
        "post-up ip route add default via 1.1.1.1 dev eth0",
        "pre-down ip route del default via 1.1.1.1 dev eth0",
        "pre-down ip route del 1.1.1.1 dev eth0",
        "mtu 1400",
    ]
    assert remove_gateway_scripts(legacy) == ["mtu 1400"]
    mismatched = [*legacy[:3], "pre-down ip route del 1.1.1.2 dev eth0"]
    assert remove_gateway_scripts(mismatched) == mismatched
    marked = ["a", "# --- BEGIN PVE ---", "x", "# --- END PVE ---", *legacy]
    assert remove_gateway_scripts(marked) == ["a", *legacy]  # marked blocks win over legacy
