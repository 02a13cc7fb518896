"""``ostype: unmanaged`` (C.7f) and NixOS's reduced setup."""

from __future__ import annotations

import os
from pathlib import Path

from shared.guest.detect import resolve_arch

from .helpers import debian_root, make_root, read, setup_for


def snapshot(root: Path) -> dict[str, tuple[int, float, bytes | str]]:
    out: dict[str, tuple[int, float, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            content: bytes | str = b""
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime, content)
    return out


def test_c7f_unmanaged_touches_nothing(tmp_path: Path) -> None:
    root = debian_root(tmp_path, extra={"/etc/ssh/sshd_config": "", "/etc/machine-id": "x\n"})
    before = snapshot(root)
    conf = {"ostype": "unmanaged", "hostname": "u", "net0": "name=eth0,ip=dhcp", "timezone": "UTC"}
    setup = setup_for(root, conf)
    assert setup.ostype == "unmanaged" and setup.warnings == []
    setup.post_create(password="secret", ssh_keys="ssh-rsa K k@h")
    setup.regenerate_ssh_host_keys()
    setup.pre_start()
    setup.template_fixup()
    setup.clone_fixup()
    setup.set_hostname(None, "v")
    assert snapshot(root) == before
    assert resolve_arch(root, "unmanaged")[0] == "amd64"


def test_nixos_network_and_hostname_only(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": "ID=nixos\n", "/nix/store/": ""})
    setup = setup_for(
        root, {"hostname": "n", "net0": "name=eth0,ip=dhcp", "timezone": "Europe/Vienna"}
    )
    setup.post_create(password=None, ssh_keys=None)
    assert setup.ostype == "nixos" and setup.warnings == []
    assert "DHCP = ipv4" in read(root, "/etc/systemd/network/eth0.network")
    assert read(root, "/etc/hostname") == "n\n"
    assert not (root / "etc/localtime").exists()  # NixOS manages its zone itself
