from __future__ import annotations

import os
from pathlib import Path

from .helpers import make_root, read, setup_for


def test_arch_enables_networkd(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {"/etc/os-release": "ID=arch\n", "/etc/securetty": "console\n", "/etc/systemd/system/": ""},
    )
    setup = setup_for(root, {"net0": "name=eth0,ip=dhcp"})
    setup.post_create(password=None, ssh_keys=None)
    assert setup.ostype == "archlinux"
    link = root / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    assert os.readlink(link) == "/usr/lib/systemd/system/systemd-networkd.service"
    assert read(root, "/etc/securetty") == "console\ntty1\ntty2\ntty3\ntty4\n"
    assert read(root, "/etc/systemd/system-preset/00-pve.preset").endswith(
        "enable systemd-networkd.service\n"
    )
    assert "DHCP = ipv4" in read(root, "/etc/systemd/network/eth0.network")
