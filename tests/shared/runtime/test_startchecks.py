"""The checks before a start: LXC's own parse of a generated config, search permission for an
unprivileged root, bridges and VLAN filtering (a scratch sysfs-like tree)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.atomic import WriteError
from shared.ctconfig.config import parse_config
from shared.errors import ConfigError
from shared.runtime.lxccheck import check_config
from shared.runtime.startcheck import check_bridges, check_values
from shared.runtime.traverse import check_traversable


def test_lxc_parses_the_generated_config(ctroot: Path) -> None:
    check_config(100, "lxc.uts.name = ok\nlxc.arch = amd64\n")
    with pytest.raises(ConfigError) as err:
        check_config(100, "lxc.uts.name = ok\nlxc.init_cmd = /sbin/init\n")
    assert str(err.value).startswith("vm 100 - LXC rejects config line 'lxc.init_cmd = /sbin/init'")
    assert err.value.hint == "'lxc.init_cmd' is the pre-LXC-3 name; LXC 5 calls it 'lxc.init.cmd'"
    with pytest.raises(ConfigError, match="Unsupported personality"):
        check_config(100, "lxc.arch = amd64x\n")
    assert not list((ctroot / "run").rglob("lxccheck-*"))  # the scratch lxcpath is gone


def test_strict_values(ctroot: Path) -> None:
    check_values(parse_config("arch: arm64\nhostname: web\n", 100))
    for text, key in (("arch: amd64x\n", "arch"), ("hostname: a;b\n", "hostname")):
        with pytest.raises(ConfigError, match=f"vm 100 - unable to parse value of '{key}'"):
            check_values(parse_config(text, 100))


def test_search_permission_for_the_mapped_root(tmp_path: Path) -> None:
    for parent in (tmp_path, *tmp_path.parents):  # pytest makes its temp dirs 0700
        if parent in (Path("/"), Path("/tmp")):
            break
        parent.chmod(parent.stat().st_mode | 0o711)
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    target = closed / "inner/rootfs/not-yet"
    check_traversable(target, 0, 0)
    with pytest.raises(ConfigError, match=f"directory '{closed}' cannot be searched by uid 100000"):
        check_traversable(target, 100000, 100000)
    closed.chmod(0o711)
    check_traversable(target, 100000, 100000)


def test_bridges_and_vlan_filtering(tmp_path: Path) -> None:
    (tmp_path / "vmbr0/bridge").mkdir(parents=True)
    (tmp_path / "vmbr0/bridge/vlan_filtering").write_text("0\n")
    (tmp_path / "vmbr1/bridge").mkdir(parents=True)
    (tmp_path / "vmbr1/bridge/vlan_filtering").write_text("1\n")
    (tmp_path / "eth0").mkdir()

    def conf(net: str) -> object:
        return parse_config(f"net0: name=eth0,{net}\n", 100)

    check_bridges(conf("bridge=vmbr0"), tmp_path)  # type: ignore[arg-type]
    check_bridges(conf("bridge=vmbr1,tag=7"), tmp_path)  # type: ignore[arg-type]
    for net, message in (
        ("bridge=vmbr0,tag=7", "VLAN tag 7 needs a VLAN-aware bridge"),
        ("bridge=vmbr9", "net0: bridge 'vmbr9' does not exist"),
        ("bridge=..", "net0: bridge '..' does not exist"),
        ("bridge=eth0,tag=7", "net0: 'eth0' is not a Linux bridge"),
        ("bridge=eth0", "net0: 'eth0' is not a Linux bridge$"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_bridges(conf(net), tmp_path)  # type: ignore[arg-type]


def test_a_run_directory_that_takes_nothing_is_one_line(ctroot: Path) -> None:
    """A full or read-only run directory ended pct start in a traceback."""
    run = ctroot / "run/ctkit"
    run.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(run)], check=True)
    try:
        with pytest.raises(WriteError, match=r"^unable to write '.*run/ctkit': Read-only file"):
            check_config(100, "lxc.uts.name = ok\n")
    finally:
        subprocess.run(["umount", str(run)], check=True)
