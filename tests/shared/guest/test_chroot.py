"""The chrooted child: hostile symlinks stay inside the root, errors come back, no imports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import shared.guest
from shared.errors import ConfigError, CtkitError
from shared.guest.chroot import run_in_root

from .helpers import DEBIAN_PASSWD, DEBIAN_SHADOW, debian_root, read, setup_for


def test_result_and_errors_cross_the_pipe(tmp_path: Path) -> None:
    assert run_in_root(tmp_path, lambda: {"cwd": os.getcwd(), "list": [1, "a"]}) == {
        "cwd": "/",
        "list": [1, "a"],
    }

    def fail() -> None:
        raise ConfigError("home directory '/x' of root does not exist!")

    with pytest.raises(ConfigError, match=r"^home directory '/x' of root does not exist!$"):
        run_in_root(tmp_path, fail)
    with pytest.raises(CtkitError, match="error in setup task: ZeroDivisionError"):
        run_in_root(tmp_path, lambda: 1 // 0)

    def missing() -> None:
        with open("/nope"):
            pass

    with pytest.raises(ConfigError, match="No such file or directory '/nope'"):
        run_in_root(tmp_path, missing)


def test_refuses_host_root() -> None:
    with pytest.raises(ConfigError, match="no root directory"):
        run_in_root(Path("/"), lambda: None)


def test_child_cannot_import_modules_from_the_container(tmp_path: Path) -> None:
    """A lazy import inside the chroot would execute container code as root: it must fail."""
    for entry in sys.path:
        if entry.startswith("/"):
            target = tmp_path / entry.lstrip("/") / "ctkit_evil_module.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("raise SystemExit('container code ran')\n")
    with pytest.raises(CtkitError, match="ModuleNotFoundError"):
        run_in_root(tmp_path, lambda: __import__("ctkit_evil_module"))
    # nor through the __path__ of an already imported package
    package_dir = Path(shared.guest.__file__).parent
    evil = tmp_path / str(package_dir).lstrip("/") / "ctkit_evil_sub.py"
    evil.parent.mkdir(parents=True, exist_ok=True)
    evil.write_text("raise SystemExit('container code ran')\n")
    with pytest.raises(CtkitError, match="ModuleNotFoundError"):
        run_in_root(tmp_path, lambda: __import__("shared.guest.ctkit_evil_sub"))


def test_hostile_symlinks_never_reach_the_host(tmp_path: Path) -> None:
    """Absolute and ../ links in the CT resolve inside it; host files stay byte-identical."""
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    secrets = {
        "etc/shadow": "root:$6$host$secret:19000:0:99999:7:::\n",
        "etc/hosts": "10.1.1.1 host-only\n",
        "resolv": "nameserver 192.0.2.53\n",
        "passwd": "root:x:0:0:root:/root:/bin/bash\n",
    }
    for name, text in secrets.items():
        (host / name).write_text(text)
    root = debian_root(tmp_path / "ct", "12.5", {"/etc/passwd": DEBIAN_PASSWD})
    os.symlink(host / "etc/shadow", root / "etc/shadow")  # absolute: host's shadow
    os.symlink(host / "etc/hosts", root / "etc/hosts")
    os.symlink(
        "../../../../../../../../" + str(host / "resolv").lstrip("/"), root / "etc/resolv.conf"
    )
    os.symlink(host / "passwd", root / "etc/hostname")
    setup = setup_for(root, {"hostname": "ct1", "net0": "name=eth0,ip=dhcp"})
    setup.post_create(password="secret12", ssh_keys="ssh-ed25519 AAAA x@y")
    setup.pre_start()
    for name, text in secrets.items():
        assert (host / name).read_text() == text, name
    assert sorted(p.name for p in host.iterdir()) == ["etc", "passwd", "resolv"]
    assert sorted(p.name for p in (host / "etc").iterdir()) == ["hosts", "shadow"]
    assert "ct1" in read(root, "/etc/hosts") and not (root / "etc/hosts").is_symlink()
    assert read(root, "/etc/hostname") == "ct1\n"


def test_hostile_directory_link_fails_without_touching_the_host(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    root = debian_root(tmp_path / "ct")
    os.symlink(host, root / "etc/network")  # inside the CT this points nowhere
    setup = setup_for(root, {"net0": "name=eth0,ip=dhcp"})
    with pytest.raises(ConfigError, match="unable to create directory '/etc/network'"):
        setup.set_network()
    assert list(host.iterdir()) == []


def test_hostile_home_directory_link(tmp_path: Path) -> None:
    """root's home pointing at a host directory: the keys land in the CT's own directory."""
    host_home = tmp_path / "hosthome"
    (host_home / ".ssh").mkdir(parents=True)
    root = debian_root(
        tmp_path / "ct",
        extra={
            "/etc/passwd": DEBIAN_PASSWD.replace("/root:", f"{host_home}:"),
            "/etc/shadow": DEBIAN_SHADOW,
        },
    )
    (root / str(host_home).lstrip("/")).mkdir(parents=True)
    setup_for(root, {}).post_create(password=None, ssh_keys="ssh-rsa KEY k@h")
    assert not (host_home / ".ssh/authorized_keys").exists()
    assert "ssh-rsa KEY k@h" in read(root, f"{host_home}/.ssh/authorized_keys")
