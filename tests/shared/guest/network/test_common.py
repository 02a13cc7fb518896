from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.guest.config import GuestConfig
from shared.guest.network.common import (
    Nic,
    gw4_needs_route,
    gw6_needs_route,
    ip_in_cidr,
    ipv4_address_netmask,
    named_nics,
    primary_ips,
)


def test_named_nics_and_primary_ips() -> None:
    cfg = GuestConfig.from_pct_conf(
        1,
        {
            "net1": "name=eth1,bridge=vmbr0,ip=dhcp",
            "net0": "bridge=vmbr0,name=eth0,ip=1.2.3.4/24,ip6=fd00::4/64",
            "net2": "bridge=vmbr0",
        },
    )
    assert [n.name for n in named_nics(cfg)] == ["eth0", "eth1"]
    assert primary_ips(cfg) == ("1.2.3.4", "fd00::4")
    cfg.nets[0]["ip"] = "dhcp"
    cfg.nets[0]["ip6"] = "auto"
    assert primary_ips(cfg) == (None, None)


def test_reachability() -> None:
    assert ip_in_cidr("2001:1::ffff", "2001:1::/64")
    assert not ip_in_cidr("11.0.0.1", "10.0.0.100/32")
    assert not ip_in_cidr("garbage", "10.0.0.0/8")
    assert gw4_needs_route(Nic("e", ip="10.0.0.100/32", gw="11.0.0.1"))
    assert not gw4_needs_route(Nic("e", ip="dhcp", gw="11.0.0.1"))
    assert not gw6_needs_route(Nic("e", ip6="fc02::1/64", gw6="fe80::1"))
    assert gw6_needs_route(Nic("e", ip6="fc00::1/64", gw6="fc00:1::ff"))


def test_netmask() -> None:
    assert ipv4_address_netmask("192.168.3.102/20") == ("192.168.3.102", "255.255.240.0")
    with pytest.raises(ConfigError, match="unable to parse ipv4 address/mask"):
        ipv4_address_netmask("1.2.3.4")
