"""Gentoo (guest-setup.md C.3) on a root file system."""

from __future__ import annotations

import os
from pathlib import Path

from .helpers import make_root, read, setup_for


def test_c3_conf_net_hostname_and_links(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "/etc/gentoo-release": "Gentoo Base System release 2.14\n",
            "/etc/conf.d/net": "# template default\nconfig_eth0=dhcp\n",
            "/etc/conf.d/hostname": 'hostname="localhost"\n',
            "/etc/init.d/net.lo": "#!/sbin/openrc-run\n",
            "/etc/inittab": "c1:12345:respawn:/sbin/agetty 38400 tty1 linux\nx:0:wait:halt\n",
        },
    )
    setup = setup_for(
        root, {"hostname": "g.example", "net0": "name=eth0,ip=10.0.0.2/24,gw=10.0.0.1"}
    )
    for _ in range(2):
        setup.post_create(password=None, ssh_keys=None)
    assert read(root, "/etc/conf.d/net") == (
        "# --- BEGIN PVE ---\n"
        'modules="$modules ifconfig"\n'
        'config_eth0="10.0.0.2/24"\n'
        'routes_eth0="default gw 10.0.0.1"\n'
        "# --- END PVE ---\n"
    )
    assert os.readlink(root / "etc/init.d/net.eth0") == "net.lo"
    assert read(root, "/etc/conf.d/hostname") == 'hostname="g"\n'
    assert read(root, "/etc/inittab") == (
        "x:0:wait:halt\n1::respawn:/sbin/agetty 38400 tty1\n2::respawn:/sbin/agetty 38400 tty2\n"
    )
