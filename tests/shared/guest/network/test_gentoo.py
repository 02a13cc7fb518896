"""Gentoo conf.d/net (guest-setup.md C.3)."""

from __future__ import annotations

from shared.guest.network.common import Nic
from shared.guest.network.gentoo import render_gentoo


def test_c3_static() -> None:
    data, up = render_gentoo([Nic("eth0", ip="10.0.0.2/24", gw="10.0.0.1")])
    assert data == (
        'modules="$modules ifconfig"\n'
        'config_eth0="10.0.0.2/24"\n'
        'routes_eth0="default gw 10.0.0.1"\n'
    )
    assert up == ["eth0"]


def test_c3_variants() -> None:
    data, up = render_gentoo(
        [
            Nic("eth1", ip="10.0.0.2/32", gw="11.0.0.1", ip6="fd00::2/64", gw6="fd00::1"),
            Nic("eth0", ip="dhcp", ip6="dhcp"),
            Nic("eth2", ip6="dhcp"),
        ]
    )
    assert data == (
        'modules="$modules ifconfig"\n'
        'config_eth0="dhcp"\n'
        'config_eth1="10.0.0.2/32\nfd00::2/64"\n'
        'routes_eth1="-host 11.0.0.1 dev eth1\ndefault gw 11.0.0.1\n-6 default gw fd00::1"\n'
    )
    assert up == ["eth0", "eth1"]  # eth2: ip6=dhcp is ignored, so it is not brought up
