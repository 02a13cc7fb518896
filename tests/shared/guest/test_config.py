from __future__ import annotations

import pytest

from shared.formats.types import FormatError
from shared.guest.config import GuestConfig


def test_from_pct_conf() -> None:
    cfg = GuestConfig.from_pct_conf(
        101,
        {
            "hostname": "web",
            "unprivileged": "1",
            "net1": "name=eth1,bridge=vmbr1,ip=dhcp",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=12:22:33:44:55:66,ip=10.0.0.2/24,gw=10.0.0.1",
            "nameserver": "8.8.8.8,8.8.8.9",
            "searchdomain": "a.example b.example",
            "tty": "4",
            "features": "nesting=1,keyctl=1",
        },
    )
    assert (cfg.vmid, cfg.hostname, cfg.unprivileged) == (101, "web", True)
    assert (cfg.root_uid, cfg.root_gid) == (100000, 100000)
    assert list(cfg.nets) == [0, 1]
    assert cfg.nets[0]["gw"] == "10.0.0.1" and cfg.nets[0]["hwaddr"] == "12:22:33:44:55:66"
    assert cfg.nameserver == ["8.8.8.8", "8.8.8.9"]
    assert cfg.searchdomain == ["a.example", "b.example"]
    assert (cfg.tty, cfg.cmode, cfg.features) == (4, "tty", {"nesting": "1", "keyctl": "1"})
    assert cfg.ostype is None and cfg.timezone is None


def test_defaults_and_explicit_ids() -> None:
    cfg = GuestConfig.from_pct_conf(1, {"unprivileged": "1"}, root_uid=200000, root_gid=300000)
    assert (cfg.root_uid, cfg.root_gid, cfg.tty, cfg.nameserver) == (200000, 300000, 2, None)
    assert GuestConfig.from_pct_conf(1, {}).root_uid == 0
    with pytest.raises(FormatError):
        GuestConfig.from_pct_conf(1, {"tty": "many"})
