"""Merging the backed-up config (pct.md §4.3.7-9, §9 cases 37, 38)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops.restore_plan import merge_config, size_in_gib
from shared import paths
from shared.ctconfig import store
from shared.ctconfig.config import Config, parse_config
from shared.storage.api import volume_path
from tests.pct.restore.conftest import BASE_CONF, Backups, images, volume_of

TWO_NETS = BASE_CONF + "net1: name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:00:01,type=veth\n"
MAC_RE = re.compile(r"hwaddr=([0-9A-F:]{17})")


def _macs(conf: Config) -> dict[str, str]:
    out = {}
    for key in ("net0", "net1"):
        m = MAC_RE.search(conf.get_raw(key) or "")
        assert m is not None
        out[key] = m.group(1)
    return out


def test_case37_unique_gives_new_macs(backups: Backups, new_vmid: Callable[[], int]) -> None:
    archive = backups.archive(TWO_NETS)
    backup = parse_config(TWO_NETS, 100)
    kept = backups.restore(new_vmid(), archive)
    assert _macs(kept) == _macs(backup)
    fresh = backups.restore(new_vmid(), archive, unique=True)
    new = _macs(fresh)
    assert all(new[k] != _macs(backup)[k] for k in new)
    assert all(int(mac[:2], 16) & 1 == 0 for mac in new.values())  # unicast
    assert fresh.get_raw("net1") == f"name=eth1,bridge=vmbr1,hwaddr={new['net1']},type=veth"


def test_command_line_interface_wins_and_gets_a_mac(backups: Backups, vmid: int) -> None:
    archive = backups.archive(TWO_NETS)
    conf = backups.restore(vmid, archive, unique=True, params={"net0": "name=eth9,bridge=vmbr9"})
    net0 = conf.get_raw("net0") or ""
    assert net0.startswith("name=eth9,bridge=vmbr9,hwaddr=BC:24:11:") and net0.endswith("type=veth")


def test_case38_template_backup(backups: Backups, vmid: int) -> None:
    archive = backups.archive(BASE_CONF + "template: 1\n")
    conf = backups.restore(vmid, archive)
    assert conf.get_raw("template") == "1"
    assert conf.get_raw("rootfs") == f"local:{vmid}/base-{vmid}-disk-0.raw,size=128M"
    assert images(backups.root, vmid) == [f"base-{vmid}-disk-0.raw"]
    assert volume_path(f"local:{vmid}/base-{vmid}-disk-0.raw").stat().st_mode & 0o222 == 0
    assert "Convert restored container to template..." in backups.logs
    assert not (paths.lxc_dir(vmid) / "config").exists()
    assert store.load(vmid).to_text() == conf.to_text()


def test_raw_lxc_keys_are_root_only(backups: Backups, new_vmid: Callable[[], int]) -> None:
    text = BASE_CONF + "lxc.apparmor.profile: unconfined\nlxc.cap.drop: \n"
    archive = backups.archive(text)
    root = backups.restore(new_vmid(), archive, trust_archive=True)
    assert root.lxc == [("lxc.apparmor.profile", "unconfined"), ("lxc.cap.drop", "")]
    user = backups.restore(new_vmid(), archive, is_root=False, trust_archive=True)
    assert user.lxc == []
    start = backups.logs.index("skipping custom lxc options, restore manually as root:")
    assert backups.logs[start : start + 5] == [
        "skipping custom lxc options, restore manually as root:",
        "--------------------------------",
        "lxc.apparmor.profile: unconfined",
        "lxc.cap.drop: ",
        "--------------------------------",
    ]


def test_custom_idmap_is_used_for_extraction(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path]
) -> None:
    text = BASE_CONF + (
        "unprivileged: 1\nlxc.idmap: u 0 100500 65000\nlxc.idmap: g 0 100500 65000\n"
    )
    conf = backups.restore(vmid, backups.archive(text), trust_archive=True)
    rootfs = mounted_volume(volume_of(conf, "rootfs"))
    st = (rootfs / "etc/hostname").stat()
    assert (st.st_uid, st.st_gid) == (100500, 100500)


@pytest.mark.parametrize(
    ("firewall", "expected"), [("[OPTIONS]\nenable: 1\n", "[OPTIONS]\nenable: 1\n"), ("", None)]
)
def test_firewall_config(backups: Backups, vmid: int, firewall: str, expected: str | None) -> None:
    backups.restore(vmid, backups.archive(BASE_CONF, firewall=firewall))
    fw = backups.root / f"etc/pve/firewall/{vmid}.fw"
    assert (fw.read_text() if fw.exists() else None) == expected


def _merged(backup_text: str, given: dict[str, str], **kw: bool) -> tuple[Config, list[str]]:
    conf = Config(1)
    for key, value in given.items():
        conf.set_raw(key, value)
    log: list[str] = []
    merge_config(conf, parse_config(backup_text, 100), log=log.append, **kw)
    return conf, log


def test_merge_copies_only_what_is_not_given() -> None:
    backup = (
        "#note\narch: amd64\ndigest: x\nfoo: bar\nhostname: old\nlock: migrate\nmemory: 64\n"
        "mp0: local:1,mp=/a\nparent: s\nrootfs: local:1\ntemplate: 1\nunprivileged: 1\n"
        "unused0: local:100/vm-100-disk-1.raw\nlxc.environment.runtime: A=1\n"
    )
    conf, log = _merged(backup, {"hostname": "new", "unprivileged": "0"})
    assert conf.values == {
        "arch": "amd64",
        "description": "note\n",
        "env": "A=1",
        "foo": "bar",  # unknown keys survive verbatim, as in Proxmox
        "hostname": "new",
        "memory": "64",
        "unprivileged": "0",
    }
    assert log == []


def test_merge_restricted_skips_features_when_becoming_privileged() -> None:
    backup = "features: nesting=1,keyctl=1\nunprivileged: 1\n"
    conf, log = _merged(backup, {}, restricted=True)
    assert "features" not in conf.values
    assert log == ["changing from unprivileged to privileged, skipping features"]
    conf, log = _merged(backup, {"unprivileged": "1"}, restricted=True)
    # the backed-up text is copied as it was written (Proxmox copies config values verbatim)
    assert conf.values["features"] == "nesting=1,keyctl=1" and log == []


@pytest.mark.parametrize(
    ("size", "text"),
    [(8 << 30, "8"), (0, "0"), (512 << 20, "0.5"), (100 << 20, "0.09765625"), (3 << 40, "3072")],
)
def test_size_in_gib(size: int, text: str) -> None:
    assert size_in_gib(size) == text


def test_restore_without_backup_keys_uses_defaults(backups: Backups, vmid: int) -> None:
    conf = backups.restore(vmid, backups.archive("rootfs: local:100/vm-100-disk-0.raw,size=64M\n"))
    assert (conf.get_raw("hostname"), conf.get_raw("memory"), conf.get_raw("swap")) == (
        f"CT{vmid}",
        "512",
        "512",
    )
    assert conf.get_raw("ostype") == "debian" and conf.get_raw("arch") == "amd64"
    assert "Detected container architecture: amd64" in backups.logs
