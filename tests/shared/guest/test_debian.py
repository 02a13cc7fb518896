"""Debian specifics: preset (C.2), snakeoil (C.8d), inittab, address style."""

from __future__ import annotations

import os
from pathlib import Path

from .helpers import debian_root, read, setup_for

PRESET = "/etc/systemd/system-preset/00-pve.preset"
SNAKEOIL = "/etc/ssl/private/ssl-cert-snakeoil.key"


def with_systemd_init(root: Path) -> Path:
    (root / "sbin").mkdir(exist_ok=True)
    (root / "sbin/init").symlink_to("/lib/systemd/systemd")
    return root


def test_c2_no_preset_before_12_or_without_systemd(tmp_path: Path) -> None:
    old = with_systemd_init(debian_root(tmp_path / "a", "11.9"))
    setup_for(old, {}).pre_start()
    assert not (old / PRESET.lstrip("/")).exists()
    sysv = debian_root(tmp_path / "b", "12.5")
    setup_for(sysv, {}).pre_start()
    assert not (sysv / PRESET.lstrip("/")).exists()


def test_c8d_snakeoil_with_systemd(tmp_path: Path) -> None:
    root = with_systemd_init(debian_root(tmp_path, extra={SNAKEOIL: "KEY"}))
    log: list[str] = []
    setup_for(root, {}, log=log).post_create(password=None, ssh_keys=None)
    assert not (root / SNAKEOIL.lstrip("/")).exists()
    unit = "/etc/systemd/system/proxmox-regenerate-snakeoil.service"
    assert "ExecStart=make-ssl-cert -f generate-default-snakeoil\n" in read(root, unit)
    link = root / "etc/systemd/system/first-boot-complete.target.wants"
    assert os.readlink(link / "proxmox-regenerate-snakeoil.service") == unit
    assert log[0] == (
        "Setting up 'proxmox-regenerate-snakeoil.service' to regenerate snakeoil certificate.."
    )


def test_c8d_snakeoil_without_systemd(tmp_path: Path) -> None:
    root = debian_root(tmp_path, extra={SNAKEOIL: "KEY"})
    setup = setup_for(root, {})
    setup.post_create(password=None, ssh_keys=None)
    assert not (root / SNAKEOIL.lstrip("/")).exists()
    assert setup.warnings == [
        "Template contains pre-generated snakeoil certificate!",
        "Run `make-ssl-cert generate-default-snakeoil -f` to regenerate it!",
    ]
    assert not (root / "etc/systemd").exists()


def test_inittab_gettys(tmp_path: Path) -> None:
    inittab = "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\npf::powerwait:x\n"
    root = debian_root(tmp_path, "12.5", {"/etc/inittab": inittab})
    setup_for(root, {"tty": "8"}).pre_start()
    lines = read(root, "/etc/inittab").split("\n")
    assert lines[:2] == ["id:2:initdefault:", "p0::powerfail:/sbin/init 0"]
    assert lines[2] == "1:2345:respawn:/sbin/getty --noclear 38400 tty1"
    assert [ln.split(":")[0] for ln in lines[3:-1]] == ["2", "3", "4", "5", "6", "8"]  # no tty7


def test_cidr_style_from_debian_10(tmp_path: Path) -> None:
    conf = {"net0": "name=eth0,ip=10.0.0.2/24,gw=10.0.0.1"}
    new = debian_root(tmp_path / "a", "10.13")
    setup_for(new, conf).pre_start()
    assert "\taddress 10.0.0.2/24\n\tgateway" in read(new, "/etc/network/interfaces")
    old = debian_root(tmp_path / "b", "9.13")
    setup_for(old, conf).pre_start()
    assert "\taddress 10.0.0.2\n\tnetmask 255.255.255.0\n" in read(old, "/etc/network/interfaces")
