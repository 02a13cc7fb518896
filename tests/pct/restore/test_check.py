"""A restore never stores a value ``pct create`` would refuse (issue: restores that exit 0 with
a container that cannot start)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from pct.ops.restore_check import check_merged, problem
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.ctconfig.pending import parse_values
from shared.errors import ConfigError, ParamError
from shared.runtime import lifecycle, lxcapi
from tests.pct.restore.conftest import Backups, leftovers
from tests.pct.restore.test_trust import CONF

# a bad value per key, and what the restored config holds instead (None: the key is absent)
BAD = {
    "hostname": ("a" * 5000, "CT{vmid}"),
    "memory": ("99999999999999999999", "512"),
    "swap": ("99999999999999999999", "512"),
    "net0": ("name=eth0,bridge=vmbr0,hwaddr=zz:zz,ip=dhcp", None),
    "arch": ("amd64x", "amd64"),  # detected from /bin/sh again
    "cores": ("99999", None),
    "ostype": ("bogus", "debian"),  # detected
}


def _conf_with(key: str, value: str, conf: str = CONF) -> str:
    lines = [line for line in conf.splitlines() if not line.startswith(f"{key}:")]
    return "\n".join([*lines, f"{key}: {value}"]) + "\n"


@pytest.mark.parametrize("key", list(BAD))
def test_bad_backed_up_value_is_dropped_with_a_line(backups: Backups, vmid: int, key: str) -> None:
    bad, instead = BAD[key]
    conf = backups.restore(vmid, backups.archive(_conf_with(key, bad)))
    saved = store.load(vmid)
    assert saved.to_text() == conf.to_text()
    expected = instead.format(vmid=vmid) if instead is not None else None
    assert saved.get_raw(key) == expected
    lines = [e for e in backups.logs if e.startswith(f"WARN: not restoring '{key}: ")]
    assert len(lines) == 1, backups.logs
    assert len(lines[0]) < 600  # the 5,000 characters are not repeated
    for other in saved.values:
        assert problem(other, saved.values[other]) is None, other


def test_good_values_and_unknown_keys_are_kept(backups: Backups, vmid: int) -> None:
    text = CONF + "cores: 2\nfoo: bar\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01\n"
    backups.restore(vmid, backups.archive(text))
    saved = store.load(vmid)
    assert saved.get_raw("cores") == "2" and saved.get_raw("foo") == "bar"
    assert saved.get_raw("net0") == "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01"
    assert not [e for e in backups.logs if "not restoring" in e]


def test_what_a_stored_config_holds_is_kept(backups: Backups, vmid: int) -> None:
    """Two values a new ``pct set`` refuses but a stored config rightly holds: an interface
    with Proxmox's firewall flag (the whole interface, its MAC and addresses, was dropped) and
    a description at the 8192 characters ``pct set`` allows (read back from its ``#`` line it
    ends with a newline: 8193 characters, and it was dropped)."""
    net = "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:00:02,ip=198.18.150.2/24"
    note = "n" * 8192
    text = CONF + f"#{note}\nnet0: {net}\n"
    backups.restore(vmid, backups.archive(text))
    saved = store.load(vmid)
    assert saved.get_raw("net0") == net
    assert saved.description == note + "\n"
    assert not [e for e in backups.logs if "not restoring" in e], backups.logs
    assert problem("description", "n" * 8193 + "\n") is not None  # beyond it: still refused


def test_memory_is_bounded_as_on_create() -> None:
    with pytest.raises(ParamError) as err:
        parse_values({"memory": "99999999999999999999"})
    assert err.value.errors == {"memory": "value must have a maximum value of 4398046511103"}
    assert parse_values({"memory": "4398046511103", "swap": "4398046511103"})


def test_merged_config_is_checked_as_a_whole() -> None:
    conf = Config(1, {"hostname": "ok", "memory": "512", "foo": "kept"})
    check_merged(conf)
    conf.values["hostname"] = "a;b"
    conf.values["memory"] = "1"
    with pytest.raises(ConfigError) as err:
        check_merged(conf)
    assert str(err.value).startswith("invalid configuration after merge - hostname: ")
    assert "; memory: value must have a minimum value of 16" in str(err.value)


def test_a_merged_config_too_large_to_read_back_is_refused() -> None:
    """Unknown keys are kept, so a merge can grow past what a config file may hold; written,
    it would leave a container that no command can read, start or destroy."""
    conf = Config(1, {"hostname": "ok", "memory": "512"})
    conf.values.update({f"x{i}": "v" * 40 for i in range(30_000)})
    size = len(conf.to_bytes())
    assert size > store.MAX_CONF
    with pytest.raises(ConfigError) as err:
        check_merged(conf)
    assert str(err.value) == (
        f"invalid configuration after merge - configuration too large ({size} bytes, "
        f"more than {store.MAX_CONF} bytes)"
    )


def test_an_archive_config_too_large_to_store_is_refused_before_anything_is_made(
    backups: Backups, vmid: int
) -> None:
    text = CONF + "".join(f"x{i}: {'v' * 40}\n" for i in range(30_000))
    with pytest.raises(ConfigError) as err:
        backups.restore(vmid, backups.archive(text))
    assert str(err.value).startswith(
        f"unable to restore CT {vmid} - invalid configuration in the archive - configuration "
        "too large ("
    )
    assert leftovers(backups.root, vmid) == []
    assert not [line for line in backups.logs if "extracting" in line]


@pytest.mark.lxc
def test_restored_container_with_bad_values_starts(
    backups: Backups, new_vmid: Callable[[], int]
) -> None:
    text = CONF
    for key, (bad, _instead) in BAD.items():
        text = _conf_with(key, bad, text)
    vmid = new_vmid()
    backups.restore(vmid, backups.archive(text))
    lifecycle.start(vmid, log=lambda _line: None)
    try:
        argv = lxcapi.attach_argv(vmid, ["cat", "/proc/sys/kernel/hostname"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout.strip() == f"CT{vmid}"
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)
