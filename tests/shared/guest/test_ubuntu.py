"""Ubuntu create-time fixups (guest-setup.md C.1e)."""

from __future__ import annotations

import os
from pathlib import Path

from .helpers import make_root, read, setup_for


def ubuntu_root(base: Path, release: str, extra: dict[str, str] | None = None) -> Path:
    files = {
        "/etc/os-release": "ID=ubuntu\n",
        "/etc/lsb-release": f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={release}\n",
        "/etc/netplan/10-lxc.yaml": "network: {}\n",
        "/etc/systemd/system/": "",
    }
    return make_root(base, {**files, **(extra or {})})


def test_2204_enables_networkd_and_writes_network_file(tmp_path: Path) -> None:
    root = ubuntu_root(tmp_path, "22.04")
    conf = {"net0": "name=eth0,bridge=vmbr0,ip=192.168.1.10/24,gw=192.168.1.1,ip6=auto"}
    setup_for(root, conf).post_create(password=None, ssh_keys=None)
    wants = root / "etc/systemd/system"
    assert os.readlink(wants / "multi-user.target.wants/systemd-networkd.service") == (
        "/lib/systemd/system/systemd-networkd.service"
    )
    assert os.readlink(wants / "socket.target.wants/systemd-networkd.socket") == (
        "/lib/systemd/system/systemd-networkd.socket"
    )
    assert not (root / "etc/netplan/10-lxc.yaml").exists()
    assert read(root, "/etc/systemd/network/eth0.network") == (
        "[Match]\nName = eth0\n\n[Network]\nDescription = Interface eth0 autoconfigured by PVE\n"
        "Address = 192.168.1.10/24\nGateway = 192.168.1.1\nDHCP = no\nIPv6AcceptRA = true\n"
    )
    assert not (root / "etc/systemd/system-preset").exists()
    assert not (root / "etc/network/interfaces").exists()


def test_2404_preset_enables_networkd(tmp_path: Path) -> None:
    root = ubuntu_root(tmp_path, "24.04")
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    preset = read(root, "/etc/systemd/system-preset/00-pve.preset")
    assert preset.endswith("disable sys-kernel-debug.mount\nenable systemd-networkd.service\n")
    assert not (root / "etc/systemd/system/multi-user.target.wants").exists()


def test_1604_uses_interfaces_and_pts0(tmp_path: Path) -> None:
    root = ubuntu_root(tmp_path, "16.04", {"/etc/securetty": "console\n"})
    setup_for(root, {"net0": "name=eth0,ip=10.0.0.2/24"}).post_create(password=None, ssh_keys=None)
    assert "\taddress 10.0.0.2\n\tnetmask 255.255.255.0\n" in read(root, "/etc/network/interfaces")
    assert read(root, "/etc/securetty") == "console\npts/0\n"
    assert (root / "etc/netplan/10-lxc.yaml").exists()


def test_1404_upstart_ttys(tmp_path: Path) -> None:
    root = ubuntu_root(tmp_path, "14.04", {"/etc/init/tty6.conf": "old\n"})
    setup_for(root, {"tty": "2"}).pre_start()
    assert "exec /sbin/getty -8 38400 tty2\n" in read(root, "/etc/init/tty2.conf")
    assert not (root / "etc/init/tty3.conf").exists() and not (root / "etc/init/tty6.conf").exists()
