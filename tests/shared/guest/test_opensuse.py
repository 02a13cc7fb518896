"""openSUSE (C.5, C.8e)."""

from __future__ import annotations

import os
from pathlib import Path

from .helpers import make_root, read, setup_for


def test_c8e_locale_and_localtime(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": 'ID="opensuse-leap"\nVERSION_ID="15.6"\n'})
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    assert read(root, "/etc/locale.conf") == "LANG=C.utf8"
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    os.unlink(root / "etc/localtime")
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"


def test_networkd_when_installed_and_slaac_only(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "/etc/os-release": 'ID="opensuse-tumbleweed"\nVERSION_ID="20250101"\n',
            "/usr/lib/systemd/systemd-networkd": "",
        },
    )
    setup_for(root, {"net0": "name=eth0,ip6=auto"}).pre_start()
    assert not (root / "etc/sysconfig/network/ifcfg-eth0").exists()
    assert "IPv6AcceptRA = true" in read(root, "/etc/systemd/network/eth0.network")
    assert read(root, "/etc/hostname") == "localhost\n"
