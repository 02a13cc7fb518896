"""CentOS family (C.4, C.7b, C.8e) beyond the upstream vectors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .helpers import make_root, read, setup_for


def centos_root(base: Path, release: str, extra: dict[str, str] | None = None) -> Path:
    return make_root(base, {"/etc/redhat-release": release + "\n", **(extra or {})})


def test_c8e_locale_conf_and_keeps_existing(tmp_path: Path) -> None:
    root = centos_root(tmp_path, "CentOS Stream release 9")
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    assert read(root, "/etc/locale.conf") == "LANG=C.utf8"
    (root / "etc/locale.conf").write_text("LANG=de_AT.UTF-8\n")
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    assert read(root, "/etc/locale.conf") == "LANG=de_AT.UTF-8\n"


def test_nmconnection_mode_and_unprivileged_tty_dir(tmp_path: Path) -> None:
    root = centos_root(
        tmp_path, "AlmaLinux release 10.0 (Purple Lion)", {"/etc/securetty": "console\n"}
    )
    conf = {"unprivileged": "1", "net0": "name=eth0,ip=dhcp", "hostname": "a.b.c"}
    setup_for(root, conf).post_create(password=None, ssh_keys=None)
    path = root / "etc/NetworkManager/system-connections/eth0.nmconnection"
    st = os.stat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 100000)
    assert read(root, "/etc/securetty") == "console\ntty1\ntty2\ntty3\ntty4\n"  # no lxc/ prefix
    assert read(root, "/etc/hostname") == "a.b.c\n"


def test_sysconfig_hostname_replaced(tmp_path: Path) -> None:
    root = centos_root(
        tmp_path,
        "CentOS Linux release 7.9.2009 (Core)",
        {"/etc/sysconfig/network": "HOSTNAME=old\nX=1\n"},
    )
    setup_for(root, {"hostname": "new.example"}).pre_start()
    assert read(root, "/etc/sysconfig/network") == "HOSTNAME=new.example\nX=1\n"


def test_route_file_keeps_user_routes_and_is_removed_when_only_ours(tmp_path: Path) -> None:
    root = centos_root(
        tmp_path,
        "CentOS Linux release 7.9.2009 (Core)",
        {"/etc/sysconfig/network-scripts/route-eth0": "10.9.0.0/16 via 10.0.0.1\n"},
    )
    routed = {"net0": "name=eth0,ip=10.0.0.5/32,gw=10.0.0.1"}
    setup_for(root, routed).pre_start()
    route = "/etc/sysconfig/network-scripts/route-eth0"
    assert read(root, route) == (
        "# --- BEGIN PVE ---\n10.0.0.1 dev eth0\ndefault via 10.0.0.1 dev eth0\n"
        "# --- END PVE ---\n10.9.0.0/16 via 10.0.0.1\n"
    )
    setup_for(root, {"net0": "name=eth0,ip=10.0.0.5/24,gw=10.0.0.1"}).pre_start()
    assert read(root, route) == "# --- BEGIN PVE ---\n# --- END PVE ---\n10.9.0.0/16 via 10.0.0.1\n"
    (root / route.lstrip("/")).write_text("")
    setup_for(root, routed).pre_start()
    setup_for(root, {"net0": "name=eth0,ip=10.0.0.5/24,gw=10.0.0.1"}).pre_start()
    assert not (root / route.lstrip("/")).exists()


def test_fedora_versions(tmp_path: Path) -> None:
    old = make_root(tmp_path / "a", {"/etc/os-release": "ID=fedora\nVERSION_ID=24\n"})
    setup_for(old, {"net0": "name=eth0,ip=dhcp"}).pre_start()
    assert (old / "etc/sysconfig/network-scripts/ifcfg-eth0").exists()
    assert not (old / "etc/systemd/network").exists()
    mid = make_root(
        tmp_path / "b",
        {"/etc/os-release": "ID=fedora\nVERSION_ID=26\n", "/etc/sysconfig/network": ""},
    )
    setup_for(mid, {"net0": "name=eth0,ip=dhcp"}).pre_start()
    assert (mid / "etc/sysconfig/network-scripts/ifcfg-eth0").exists()
    assert (mid / "etc/systemd/network/eth0.network").exists()
    assert not (mid / "etc/systemd/system-preset").exists()


def test_openeuler(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "/etc/os-release": 'ID="openEuler"\nVERSION_ID="24.03"\n',
            "/etc/hosts": "127.0.1.1 LXC_NAME\n",
        },
    )
    setup = setup_for(root, {"hostname": "e.x", "net0": "name=eth0,ip=dhcp"})
    setup.post_create(password=None, ssh_keys=None)
    assert setup.ostype == "openeuler"
    assert "LXC_NAME" not in read(root, "/etc/hosts")
    assert read(root, "/etc/hostname") == "e.x\n"
    assert "BOOTPROTO=dhcp" in read(root, "/etc/sysconfig/network-scripts/ifcfg-eth0")
    assert read(root, "/etc/systemd/system-preset/00-pve.preset").endswith("debug.mount\n")
