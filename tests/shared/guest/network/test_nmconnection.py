"""NetworkManager keyfiles (guest-setup.md C.4, CentOS ≥ 10)."""

from __future__ import annotations

from shared.guest.network.common import Nic
from shared.guest.network.nmconnection import render_nmconnection

UUID = "00000000-0000-0000-0000-000000000000"
HEAD = f"[connection]\nid=eth0\nuuid={UUID}\ntype=ethernet\ninterface-name=eth0\n"


def test_v6_dns_only_with_v6_nameservers() -> None:
    nic = Nic("eth0", ip="dhcp", ip6="2001:db8::5/64", gw6="2001:db8::1")
    text = render_nmconnection(nic, UUID, ["192.0.2.1", "2001:db8::53"], ["a.example", "b.example"])
    assert text == HEAD + (
        "[ipv4]\nmethod=auto\ndns=192.0.2.1\ndns-search=a.example;b.example\n"
        "[ipv6]\nmethod=manual\naddress=2001:db8::5/64\ngateway=2001:db8::1\n"
        "dns=2001:db8::53\ndns-search=a.example;b.example\n"
    )


def test_disabled_and_slaac() -> None:
    text = render_nmconnection(Nic("eth0", ip="manual", ip6="auto"), UUID, ["192.0.2.1"], [])
    assert text == HEAD + "[ipv4]\nmethod=disabled\n[ipv6]\nmethod=auto\n"
    dhcp6 = render_nmconnection(Nic("eth0", ip6="dhcp"), UUID, [], [])
    assert dhcp6.endswith("[ipv6]\nmethod=auto\n")
