"""Common setup steps (guest-setup.md A.2, C.7, C.8) on real root file systems."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.guest.random48 import PerlRand

from .helpers import (
    DEBIAN_PASSWD,
    DEBIAN_SHADOW,
    debian_root,
    is_hash_of,
    make_root,
    read,
    setup_for,
)

BLOCK = "# --- BEGIN PVE ---\n{}# --- END PVE ---\n"
LOCALHOST = "127.0.0.1 localhost.localnet localhost\n::1 localhost.localnet localhost\n"


def accounts(base: Path) -> Path:
    return debian_root(base, extra={"/etc/passwd": DEBIAN_PASSWD, "/etc/shadow": DEBIAN_SHADOW})


# --- C.7 hosts / hostname / DNS ----------------------------------------------------------------


def test_c7a_search_domains_in_host_line(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    conf = {"hostname": "web", "searchdomain": "a.example b.example", "net0": "name=eth0,ip=dhcp"}
    setup_for(root, conf).pre_start()
    assert read(root, "/etc/hosts") == BLOCK.format(
        LOCALHOST + "127.0.1.1 web.a.example web.b.example web\n"
    )


def test_c7b_fqdn_and_v6_only(tmp_path: Path) -> None:
    conf = {"hostname": "web.corp.example", "net0": "name=eth0,ip6=2001:db8::10/64"}
    root = debian_root(tmp_path)
    setup_for(root, conf).pre_start()
    assert read(root, "/etc/hosts").endswith(
        "2001:db8::10 web.corp.example web\n# --- END PVE ---\n"
    )
    assert read(root, "/etc/hostname") == "web\n"
    centos = make_root(tmp_path / "c", {"/etc/redhat-release": "CentOS Stream release 9\n"})
    setup_for(centos, conf).pre_start()
    assert read(centos, "/etc/hostname") == "web.corp.example\n"


def test_c7c_rename_rewrites_only_the_block(tmp_path: Path) -> None:
    root = debian_root(tmp_path, extra={"/etc/hosts": "127.0.1.1 old\n"})
    setup = setup_for(root, {"hostname": "old"})
    setup.pre_start()
    before = read(root, "/etc/hosts")
    assert before.startswith("127.0.1.1 old\n") and "old.proxmox.com old" in before
    setup.set_hostname("old", "new")
    after = read(root, "/etc/hosts")
    assert after.startswith("127.0.1.1 old\n# --- BEGIN PVE ---\n")
    assert "127.0.1.1 new.proxmox.com new\n" in after and "old.proxmox.com" not in after
    assert after.count("# --- BEGIN PVE ---") == 1
    assert read(root, "/etc/hostname") == "new\n"


def test_c7d_ignore_files(tmp_path: Path) -> None:
    root = debian_root(
        tmp_path,
        extra={
            "/etc/.pve-ignore.resolv.conf": "",
            "/etc/resolv.conf": "nameserver 9.9.9.9\n",
            "/etc/.pve-ignore.hostname": "",
            "/etc/hostname": "keep\n",
        },
    )
    setup_for(root, {"hostname": "ct"}).pre_start()
    assert read(root, "/etc/resolv.conf") == "nameserver 9.9.9.9\n"
    assert read(root, "/etc/hostname") == "keep\n"
    assert "127.0.1.1 ct.proxmox.com ct" in read(root, "/etc/hosts")


def test_case_49_pve_ignore_hosts_byte_identical(tmp_path: Path) -> None:
    hosts = b"# mine\n10.0.0.1\tfoo \n\n"
    root = debian_root(tmp_path, extra={"/etc/.pve-ignore.hosts": ""})
    (root / "etc/hosts").write_bytes(hosts)
    setup_for(root, {"hostname": "x", "net0": "name=eth0,ip=10.0.0.9/24"}).pre_start()
    assert (root / "etc/hosts").read_bytes() == hosts


def test_c7e_host_resolv_conf(tmp_path: Path) -> None:
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("# host\nsearch lan\nnameserver 192.168.1.1\n")
    root = debian_root(tmp_path)
    setup_for(root, {"hostname": "a"}, host_dns=None, resolv_conf=resolv).pre_start()
    assert read(root, "/etc/resolv.conf") == BLOCK.format("search lan\nnameserver 192.168.1.1\n")
    assert "127.0.1.1 a.lan a\n" in read(root, "/etc/hosts")


def test_configured_dns_wins_and_empty_hosts_line(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    setup_for(root, {"nameserver": "1.1.1.1;2606:4700::1111"}).pre_start()
    assert read(root, "/etc/resolv.conf") == BLOCK.format(
        "search proxmox.com\nnameserver 1.1.1.1\nnameserver 2606:4700::1111\n"
    )
    assert read(root, "/etc/hosts") == BLOCK.format(LOCALHOST + "127.0.1.1 localhost\n")


# --- C.8 password / keys / misc --------------------------------------------------------------


def test_c8a_no_password_locks_root(tmp_path: Path) -> None:
    root = accounts(tmp_path)
    before = int(time.time() // 86400)
    setup_for(root, {}).post_create(password=None, ssh_keys=None)
    days = {before, int(time.time() // 86400)}  # a run across midnight UTC may write either
    assert read(root, "/etc/shadow").split("\n")[0] in {f"root:*:{d}:0:99999:7:::" for d in days}
    assert read(root, "/etc/passwd") == DEBIAN_PASSWD


def test_c8b_password_is_sha512_crypt(tmp_path: Path) -> None:
    root = accounts(tmp_path)
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    setup_for(root, {}).post_create(password="secret12", ssh_keys=None)
    hashed = read(root, "/etc/shadow").split("\n")[0].split(":")[1]
    assert hashed.startswith("$6$") and len(hashed.split("$")[2]) == 8
    assert len(hashed.split("$")[3]) == 86 and is_hash_of("secret12", hashed)
    st = os.stat(root / "etc/shadow")
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, 42)
    assert read(root, "/etc/shadow").split("\n")[1:] == DEBIAN_SHADOW.split("\n")[1:]


@pytest.mark.parametrize(("group", "expected"), [("shadow:x:42:\n", (0o640, 42)), ("", (0o600, 0))])
def test_password_into_a_symlinked_shadow_is_not_world_readable(
    tmp_path: Path, group: str, expected: tuple[int, int]
) -> None:
    # a template's /etc/shadow may be a symlink: the file replacing it has no mode to keep
    root = debian_root(tmp_path, extra={"/etc/passwd": DEBIAN_PASSWD, "/etc/group": group})
    (root / "etc/shadow.real").write_text(DEBIAN_SHADOW)
    os.symlink("shadow.real", root / "etc/shadow")
    setup_for(root, {}).post_create(password="secret12", ssh_keys=None)
    st = os.lstat(root / "etc/shadow")
    assert stat.S_ISREG(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == expected
    assert is_hash_of("secret12", read(root, "/etc/shadow").split("\n")[0].split(":")[1])


def test_password_without_shadow_goes_to_passwd(tmp_path: Path) -> None:
    root = debian_root(tmp_path, extra={"/etc/passwd": DEBIAN_PASSWD})
    setup_for(root, {}).post_create(password="$6$abc$def", ssh_keys=None)
    assert read(root, "/etc/passwd").startswith("root:$6$abc$def:0:0:")


def test_c8c_existing_keys_kept(tmp_path: Path) -> None:
    root = accounts(tmp_path)
    (root / "root/.ssh").mkdir()
    (root / "root/.ssh/authorized_keys").write_text("ssh-ed25519 USER u@h\n")
    setup = setup_for(root, {})
    setup.post_create(password=None, ssh_keys="ssh-rsa ONE a@b")
    assert read(root, "/root/.ssh/authorized_keys") == "ssh-ed25519 USER u@h\n" + BLOCK.format(
        "ssh-rsa ONE a@b\n"
    )
    setup.post_create(password=None, ssh_keys="ssh-rsa TWO a@b\nssh-rsa THREE c@d")
    assert read(root, "/root/.ssh/authorized_keys") == "ssh-ed25519 USER u@h\n" + BLOCK.format(
        "ssh-rsa TWO a@b\nssh-rsa THREE c@d\n"
    )


def test_keys_create_ssh_dir_and_need_home(tmp_path: Path) -> None:
    root = accounts(tmp_path)
    setup_for(root, {}).post_create(password=None, ssh_keys="ssh-rsa K a@b")
    assert stat.S_IMODE(os.stat(root / "root/.ssh").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "root/.ssh/authorized_keys").st_mode) == 0o700
    (root / "etc/passwd").write_text(DEBIAN_PASSWD.replace(":/root:", ":/nonexistent:"))
    with pytest.raises(
        ConfigError, match=r"^home directory '/nonexistent' of root does not exist!$"
    ):
        setup_for(root, {}).post_create(password=None, ssh_keys="ssh-rsa K a@b")


def test_c8f_pre_start_never_touches_password_or_keys(tmp_path: Path) -> None:
    root = accounts(tmp_path)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    setup_for(root, {"hostname": "ct", "net0": "name=eth0,ip=dhcp"}).pre_start()
    assert read(root, "/fastboot") == ""
    assert read(root, "/etc/shadow") == DEBIAN_SHADOW
    assert not (root / "root/.ssh").exists()
    assert read(root, "/etc/hostname") == "ct\n"
    assert "iface eth0 inet dhcp" in read(root, "/etc/network/interfaces")
    assert (root / "etc/resolv.conf").exists()


def test_c8g_timezone(tmp_path: Path) -> None:
    root = debian_root(
        tmp_path,
        extra={"/usr/share/zoneinfo/Europe/Vienna": "TZif", "/etc/timezone": "Etc/UTC\n"},
    )
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    setup = setup_for(root, {"timezone": "Europe/Vienna"})
    setup.pre_start()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Vienna"
    assert read(root, "/etc/timezone") == "Europe/Vienna\n"
    log: list[str] = []
    missing = setup_for(root, {"timezone": "Mars/Olympus"}, log=log)
    missing.set_timezone()
    text = "container does not have /usr/share/zoneinfo/Mars/Olympus, timezone can not be modified"
    assert missing.warnings == [text] and log == [f"WARN: {text}"]
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Vienna"


def test_timezone_host(tmp_path: Path) -> None:
    zone = tmp_path / "hostzone/usr/share/zoneinfo/Asia/Tokyo"
    zone.parent.mkdir(parents=True)
    zone.write_text("TZif")
    host_localtime = tmp_path / "host-localtime"
    host_localtime.symlink_to(zone)
    (tmp_path / "host-timezone").write_text("Asia/Tokyo\n")
    root = debian_root(tmp_path, extra={str(zone): "TZif", "/etc/timezone": "UTC\n"})
    setup = setup_for(
        root,
        {"timezone": "host"},
        host_localtime=host_localtime,
        host_timezone=tmp_path / "host-timezone",
    )
    setup.set_timezone()
    assert os.readlink(root / "etc/localtime") == str(zone)
    assert read(root, "/etc/timezone") == "Asia/Tokyo\n"


def test_machine_id_create_and_clone(tmp_path: Path) -> None:
    files = {
        "/etc/machine-id": "abc\n",
        "/var/lib/dbus/machine-id": "abc\n",
        "/lib/systemd/systemd": "#!",
    }
    root = debian_root(tmp_path, extra=files)
    os.chmod(root / "lib/systemd/systemd", 0o755)
    setup = setup_for(root, {})
    setup.post_create(password=None, ssh_keys=None)
    assert (
        not (root / "etc/machine-id").exists() and not (root / "var/lib/dbus/machine-id").exists()
    )
    (root / "etc/machine-id").write_text("abc\n")
    setup.clone_fixup()
    assert read(root, "/etc/machine-id") == "\n"
    (root / "etc/machine-id").write_text("uninitialized\n")
    setup.clone_fixup()
    assert read(root, "/etc/machine-id") == "uninitialized\n"


def test_crontab_and_cron_d(tmp_path: Path) -> None:
    job = "17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n"
    user_job = "5 4 * * * alice backup\n"
    root = debian_root(
        tmp_path,
        extra={
            "/etc/crontab": "# x\n" + job + user_job,
            "/etc/cron.d/php": job,
            "/etc/cron.d/a.b": job,
        },
    )
    setup = setup_for(root, {}, rng=PerlRand(0))
    setup.post_create(password=None, ssh_keys=None)
    rest = job.split(" ", 1)[1]
    assert read(root, "/etc/crontab") == "# x\n10 " + rest + user_job
    assert read(root, "/etc/cron.d/php") == "44 " + rest
    assert read(root, "/etc/cron.d/a.b") == job  # not a cron.d name run-parts would accept


def test_unprivileged_ownership(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    os.chown(root / "root", 100000, 100000)
    conf = {"unprivileged": "1", "hostname": "u", "net0": "name=eth0,ip=dhcp"}
    setup_for(root, conf).post_create(password=None, ssh_keys="ssh-rsa K k@h")
    for path in (
        "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/network", "etc/network/interfaces",
        "root/.ssh", "root/.ssh/authorized_keys",
    ):  # fmt: skip
        st = os.lstat(root / path)
        assert (st.st_uid, st.st_gid) == (100000, 100000), path


def test_systemd_getty_and_preset(tmp_path: Path) -> None:
    unit = "[Service]\nExecStart=-/sbin/agetty --noclear --keep-baud pts/%I 115200 $TERM\n"
    root = debian_root(
        tmp_path,
        "12.5",
        {
            "/lib/systemd/system/container-getty@.service": unit,
            "/etc/systemd/system/getty.target.wants/getty@tty1.service": "",
            "/etc/systemd/system/getty.target": "",
        },
    )
    (root / "sbin").mkdir()
    (root / "sbin/init").symlink_to("/lib/systemd/systemd")
    setup_for(root, {"tty": "3"}).pre_start()
    wants = root / "etc/systemd/system/getty.target.wants"
    # no executable /lib/systemd/systemd: units are looked up in /usr/lib, none there yet
    assert sorted(p.name for p in wants.iterdir()) == ["getty@tty1.service"]
    os.makedirs(root / "usr/lib/systemd/system")
    (root / "usr/lib/systemd/system/container-getty@.service").write_text(unit)
    setup_for(root, {"tty": "3"}).pre_start()
    assert sorted(p.name for p in wants.iterdir()) == [
        "container-getty@1.service", "container-getty@2.service", "container-getty@3.service",
    ]  # fmt: skip
    assert os.readlink(wants / "container-getty@2.service") == (
        "/usr/lib/systemd/system/container-getty@.service"
    )
    assert "--keep-baud tty%I" in read(root, "/usr/lib/systemd/system/container-getty@.service")
    assert not (root / "etc/systemd/system/getty.target").exists()
    assert read(root, "/etc/systemd/system-preset/00-pve.preset") == (
        "# Added by PVE at create-time for first-boot configuration.\n"
        "enable container-getty@.service\ndisable getty@.service\n"
        "disable sys-kernel-config.mount\ndisable sys-kernel-debug.mount\n"
        "disable systemd-networkd.service\n"
    )
