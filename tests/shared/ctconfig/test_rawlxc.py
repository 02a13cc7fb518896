"""Raw lxc.* keys: allow-list, deprecated names, forbidden keys."""

from __future__ import annotations

import pytest

from shared.ctconfig import rawlxc
from shared.ctconfig.config import parse_config
from shared.ctconfig.rawlxc import KeyCheck, check_key, split_line
from shared.errors import ConfigError


@pytest.mark.parametrize(
    "key",
    [
        "lxc.apparmor.profile",
        "lxc.init.cmd",
        "lxc.init.uid",
        "lxc.mount.entry",
        "lxc.idmap",
        "lxc.hook.pre-start",
        "lxc.environment.runtime",
        "lxc.sysctl.kernel.shm_rmid_forced",
        "lxc.cgroup2.memory.max",
        "lxc.prlimit.nofile",
        "lxc.net.0.type",
    ],
)
def test_allowed_keys(key: str) -> None:
    assert check_key(100, key) == KeyCheck(True)


def test_deprecated_and_renamed_keys_warn() -> None:
    assert check_key(7, "lxc.utsname") == KeyCheck(
        True, "vm 7 - lxc.utsname is deprecated and was renamed to lxc.uts.name"
    )
    assert check_key(7, "lxc.network.ipv4") == KeyCheck(
        True, "vm 7 - lxc.network.ipv4 is deprecated and was renamed to lxc.net.INDEX.ipv4.address"
    )
    assert check_key(7, "lxc.limit.nofile") == KeyCheck(
        True, "vm 7 - lxc.limit.nofile: lxc.limit.* was renamed to lxc.prlimit.*"
    )
    result = check_key(7, "lxc.cgroup.cpuset.cpus")
    assert result.accepted and result.message and "lxc.cgroup2" in result.message


def test_forbidden_and_unknown_keys() -> None:
    assert check_key(9, "lxc.rootfs.path") == KeyCheck(
        False, "vm 9 - lxc.rootfs.path: lxc.rootfs.path is auto generated from rootfs"
    )
    assert check_key(9, "lxc.rootfs.options").message == (
        "vm 9 - lxc.rootfs.options: lxc.rootfs.options is not supported, please use mount "
        'point options in the "rootfs" key'
    )
    assert check_key(9, "lxc.sysctl.net.ipv4.ip_forward") == KeyCheck(False)
    assert check_key(9, "lxc.hook.bogus") == KeyCheck(False)


def test_split_line_forms() -> None:
    assert split_line("lxc.a.b: v w ") == ("lxc.a.b", "v w")
    assert split_line("lxc.a.b=v") == ("lxc.a.b", "v")
    assert split_line("lxc.a.b   =   v=1") == ("lxc.a.b", "v=1")
    assert split_line("lxc.a.b:") == ("lxc.a.b", "")
    assert split_line("lxc.A: v") is None
    assert split_line("lxc.a b: v") is None
    assert split_line("memory: 5") is None


def test_raw_entries_of_a_config_are_checked() -> None:
    conf = parse_config(b"lxc.mount.auto: proc\nlxc.tty: 2\n", 5, strict=True)
    assert conf.warnings == ["vm 5 - lxc.tty is deprecated and was renamed to lxc.tty.max"]
    assert conf.lxc == [("lxc.mount.auto", "proc"), ("lxc.tty", "2")]
    with pytest.raises(ConfigError, match=r"lxc\.rootfs\.path is auto generated"):
        parse_config(b"lxc.rootfs.path: /x\n", 5, strict=True)
    with pytest.raises(ConfigError, match=r"unable to parse config: lxc.x.y: 1"):
        parse_config(b"lxc.x.y: 1\n", 5, strict=True)


def test_every_deprecated_key_names_a_valid_or_indexed_successor() -> None:
    for old, new in rawlxc.DEPRECATED_KEYS.items():
        assert check_key(1, old).accepted and check_key(1, old).message is not None
        assert new.startswith("lxc.") and new != old
