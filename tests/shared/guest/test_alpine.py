"""Alpine (C.6c) and its template fixups."""

from __future__ import annotations

import os
from pathlib import Path

from .helpers import make_root, read, setup_for

INITTAB = "::sysinit:/sbin/openrc sysinit\ntty1::respawn:/sbin/getty 38400 tty1\n"


def test_c6c_dhcp6_written_as_manual_and_runlevels(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "/etc/alpine-release": "3.19.1\n",
            "/etc/runlevels/boot/": "",
            "/etc/runlevels/shutdown/": "",
            "/etc/inittab": INITTAB,
        },
    )
    setup_for(root, {"net0": "name=eth0,ip=10.0.0.2/24,ip6=dhcp", "tty": "2"}).post_create(
        password=None, ssh_keys=None
    )
    assert read(root, "/etc/network/interfaces").endswith(
        "auto eth0\niface eth0 inet static\n\taddress 10.0.0.2/24\n\niface eth0 inet6 manual\n\n"
    )
    assert os.readlink(root / "etc/runlevels/boot/networking") == "/etc/init.d/networking"
    assert os.readlink(root / "etc/runlevels/shutdown/savecache") == "/etc/init.d/savecache"
    assert read(root, "/etc/inittab") == (
        "::sysinit:/sbin/openrc sysinit\ntty1::respawn:/sbin/getty 38400 tty1\n"
        "tty2::respawn:/sbin/getty 38400 tty2\n"
    )
