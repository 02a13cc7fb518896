"""OS detection (pct.md §7, guest-setup.md C.9), version gates (A.3) and arch detection."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.guest.detect import (
    NO_OS_RELEASE,
    UNDETECTABLE,
    Probe,
    check_version,
    classify,
    detect_arch,
    elf_arch,
    parse_os_release,
    probe_rootfs,
    resolve_arch,
)

from .helpers import make_root


@dataclass
class Found:
    ostype: str
    version: str | None
    warnings: list[str]


def detect(probe: Probe) -> Found:
    """What the setup finds in a probe: the OS type, then that distribution's version gate."""
    ostype, warnings = classify(probe)
    if ostype is None:
        raise ConfigError(UNDETECTABLE)
    version, more = check_version(ostype, probe)
    return Found(ostype, version, warnings + more)


def detect_ostype(root: Path) -> tuple[str, str | None, list[str]]:
    """``(ostype, version, warnings)`` that detection finds in ``root``, probed as setup does."""
    result = detect(probe_rootfs(root))
    return result.ostype, result.version, result.warnings


ELF64_LE = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x03\x00"
ELF32_LE = b"\x7fELF\x01\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00"


def _p(files: dict[str, str], nix: bool = False) -> Probe:
    return Probe(files=dict(files), nix_store=nix)


# --- C.9 vectors on real root file systems ---------------------------------------------------


def test_debian_by_os_release(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": "ID=debian\n", "/etc/debian_version": "12.5\n"})
    assert detect_ostype(root) == ("debian", "12", [])


def test_kali_falls_back_to_debian_12(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, {"/etc/os-release": "ID=kali\n", "/etc/debian_version": "kali-rolling\n"}
    )
    ostype, version, warnings = detect_ostype(root)
    assert (ostype, version) == ("debian", "12")
    assert warnings == ["unknown ID 'kali' in /etc/os-release file, trying fallback detection"]


@pytest.mark.parametrize("os_id", ["rocky", "almalinux"])
def test_rocky_alma_use_centos(tmp_path: Path, os_id: str) -> None:
    root = make_root(
        tmp_path,
        {
            "/etc/os-release": f'ID="{os_id}"\nVERSION_ID="9.3"\n',
            "/etc/redhat-release": "Rocky Linux release 9.3 (Blue Onyx)\n",
        },
    )
    assert detect_ostype(root) == ("centos", "9.3", [])


def test_unknown_id_without_fallback_fails(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": "ID=istoreos\n"})
    with pytest.raises(ConfigError, match=r"^unable to detect OS distribution$"):
        detect_ostype(root)


def test_nothing_detectable_is_unmanaged(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/bin/busybox": "x"})
    assert detect_ostype(root) == ("unmanaged", None, [NO_OS_RELEASE])
    assert NO_OS_RELEASE == (
        "/etc/os-release file not found and autodetection failed, falling back to 'unmanaged'"
    )


def test_nix_store_is_nixos_with_arch_from_init_shebang(tmp_path: Path) -> None:
    shell = "/nix/store/abc-bash-5.2/bin/bash"
    root = make_root(
        tmp_path,
        {shell: ELF64_LE + b"\xb7\x00" + b"\x00" * 40, "/sbin/init": f"#! {shell}\nexec x\n"},
    )
    assert detect_ostype(root) == ("nixos", None, [])
    assert detect_arch(root, "nixos") == "arm64"
    assert detect_arch(root) == "arm64"  # /bin/sh missing, /nix/store present


def test_usr_lib_os_release_is_used(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/usr/lib/os-release": "ID=arch\n"})
    assert detect_ostype(root) == ("archlinux", None, [])


def test_hostile_os_release_symlink_reads_inside_root(tmp_path: Path) -> None:
    """An absolute link is resolved in the container, never to the host file of that name."""
    host_file = tmp_path / "host-os-release"
    host_file.write_text("ID=debian\n")
    root = make_root(
        tmp_path, {"/etc/alpine-release": "3.19.1\n"}, {"/etc/os-release": str(host_file)}
    )
    assert detect_ostype(root) == ("alpine", "3.19.1", [])


def test_a_fifo_swapped_in_while_probing_never_blocks_the_probe(tmp_path: Path) -> None:
    """A running CT can put a FIFO at /etc/os-release right after the probe looked at the
    path and before it opened it: the open blocked until the CT wrote to it (network hot-plug
    probes a running CT, holding its config lock). Here the swap races 300 probes."""
    root = make_root(tmp_path, {"/etc/os-release": "ID=debian\nVERSION_ID=12\n"})
    etc = root / "etc"
    os.mkfifo(etc / "fifo")
    os.link(etc / "os-release", etc / "file")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for name in ("fifo", "file"):  # os-release becomes each of them in turn
                os.link(etc / name, etc / "tmp")
                os.replace(etc / "tmp", etc / "os-release")

    racer = threading.Thread(target=swap, daemon=True)
    racer.start()
    done = threading.Event()
    seen: set[str | None] = set()

    def probes() -> None:
        for _ in range(300):
            seen.add(probe_rootfs(root).files["/etc/os-release"])
        done.set()

    threading.Thread(target=probes, daemon=True).start()
    try:
        assert done.wait(30), "a probe blocked on the FIFO"
    finally:
        stop.set()
        racer.join()
        for fifo in etc.iterdir():  # a blocked reader gets its writer, and goes
            if fifo.is_fifo():
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert seen <= {None, "ID=debian\nVERSION_ID=12\n"}


# --- fallbacks and aliases (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/etc/lsb-release": "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n"}, "ubuntu"),
        ({"/etc/devuan_version": "daedalus\n"}, "devuan"),
        ({"/etc/SuSE-brand": "openSUSE\n"}, "opensuse"),
        ({"/etc/fedora-release": "Fedora release 40\n"}, "fedora"),
        ({"/etc/centos-release": "CentOS release 7.9\n"}, "centos"),
        ({"/etc/arch-release": ""}, "archlinux"),
        ({"/etc/alpine-release": "3.19.0\n"}, "alpine"),
        ({"/etc/gentoo-release": "Gentoo Base System release 2.14\n"}, "gentoo"),
        ({"/etc/openEuler-release": "openEuler release 24.03\n"}, "openeuler"),
    ],
)
def test_fallback_files(files: dict[str, str], expected: str) -> None:
    assert classify(_p(files)) == (expected, [])


@pytest.mark.parametrize(
    ("os_id", "expected"),
    [
        ("opensuse-leap", "opensuse"),
        ("opensuse-tumbleweed", "opensuse"),
        ("opensuse-slowroll", "opensuse"),
        ("sles", "opensuse"),
        ("arch", "archlinux"),
        ("openEuler", "openeuler"),
        ("devuan", "devuan"),
    ],
)
def test_aliases(os_id: str, expected: str) -> None:
    assert classify(_p({"/etc/os-release": f'ID="{os_id}"\n'})) == (expected, [])


def test_parse_os_release() -> None:
    text = 'NAME="Debian GNU/Linux"\n# ID=bogus\nID=debian\nVERSION_ID="12"\nX=\'a b\'\nY="q\\"x"\n'
    osr = parse_os_release(text)
    assert osr == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "12",
        "X": "a b",
        "Y": 'q"x',
    }


# --- version gates (A.3) ------------------------------------------------------------------------


def debian(version: str) -> Probe:
    return _p({"/etc/os-release": "ID=debian\n", "/etc/debian_version": version + "\n"})


@pytest.mark.parametrize(
    ("raw", "version"),
    [("12.5", "12"), ("13.1", "13"), ("trixie/sid", "13"), ("stretch/sid", "9"), ("4.0", "4")],
)
def test_debian_versions(raw: str, version: str) -> None:
    assert detect(debian(raw)).version == version


def test_debian_gates() -> None:
    with pytest.raises(ConfigError, match=r"^unable to parse version info 'sid'$"):
        detect(debian("sid"))
    with pytest.raises(ConfigError, match=r"^Container Debian version '3' is too old$"):
        detect(debian("3.1"))
    assert detect(debian("14.0")).warnings == []
    newer = detect(debian("15.1"))
    assert newer.version == "15" and "newer than the tested version '14'" in newer.warnings[0]


@pytest.mark.parametrize(
    ("raw", "version"),
    [("jessie", "8"), ("ascii", "9"), ("beowulf", "10"), ("chimaera", "11"),
     ("daedalus", "12"), ("excalibur", "13"), ("excalibur/ceres", "13")],
)  # fmt: skip
def test_devuan_codenames(raw: str, version: str) -> None:
    assert detect(_p({"/etc/devuan_version": raw + "\n"})).version == version


def test_devuan_unknown() -> None:
    with pytest.raises(ConfigError, match=r"^unsupported Devuan version 'foo'$"):
        detect(_p({"/etc/devuan_version": "foo\n"}))


def ubuntu(release: str) -> Probe:
    lsb = f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={release}\n"
    return _p({"/etc/os-release": "ID=ubuntu\n", "/etc/lsb-release": lsb})


def test_ubuntu_gates() -> None:
    assert detect(ubuntu("22.04")).warnings == []
    assert detect(ubuntu("26.10")).warnings == []
    assert detect(ubuntu("27.04")).warnings[0].startswith("The container's Ubuntu version '27.04'")
    with pytest.raises(ConfigError, match=r"^unsupported ancient Ubuntu version '13.04'$"):
        detect(ubuntu("13.04"))
    bad = _p({"/etc/os-release": "ID=ubuntu\n", "/etc/lsb-release": "DISTRIB_ID=Mint\n"})
    with pytest.raises(ConfigError, match=r"^got unknown DISTRIB_ID$"):
        detect(bad)


@pytest.mark.parametrize("release", ["CentOS release 4.8 (Final)", "CentOS Stream release 11"])
def test_centos_gate(release: str) -> None:
    with pytest.raises(ConfigError, match=r"^unsupported centos version '(4.8|11)'$"):
        detect(_p({"/etc/redhat-release": release}))


def test_centos_versions() -> None:
    assert (
        detect(_p({"/etc/redhat-release": "CentOS Stream release 10 (Coughlan)"})).version == "10"
    )
    assert detect(_p({"/etc/redhat-release": "CentOS release 6.3 (Final)"})).version == "6.3"


def test_fedora_and_openeuler_gates() -> None:
    assert detect(_p({"/etc/os-release": "ID=fedora\nVERSION_ID=41\n"})).version == "41"
    with pytest.raises(ConfigError, match=r"^unsupported Fedora release '21'$"):
        detect(_p({"/etc/os-release": "ID=fedora\nVERSION_ID=21\n"}))
    for odd in ("\u00b2\u00b3", "9" * 5000):  # the container's file: int() raised ValueError
        with pytest.raises(ConfigError, match=r"^unsupported Fedora release"):
            detect(_p({"/etc/os-release": f"ID=fedora\nVERSION_ID={odd}\n"}))
    assert detect(_p({"/etc/os-release": 'ID=openEuler\nVERSION_ID="24.03"\n'})).version == "24.03"
    with pytest.raises(ConfigError, match=r"^unsupported openEuler release '22.03'$"):
        detect(_p({"/etc/os-release": 'ID=openEuler\nVERSION_ID="22.03"\n'}))


@pytest.mark.parametrize(
    ("os_id", "version", "ok"),
    [
        ("opensuse", "42.3", True), ("opensuse", "13.2", True), ("opensuse", "13.0", True),
        ("opensuse-leap", "15.6", True), ("opensuse-leap", "16.0", True),
        ("sles", "12.5", True), ("opensuse", "12.3", False), ("opensuse", "14.1", False),
        ("opensuse-tumbleweed", "20240901", True), ("opensuse", "20161231", False),
        ("opensuse", "rolling", False),
    ],
)  # fmt: skip
def test_suse_gates(os_id: str, version: str, ok: bool) -> None:
    p = _p({"/etc/os-release": f'ID="{os_id}"\nVERSION_ID="{version}"\n'})
    if ok:
        assert detect(p).version == version
    else:
        with pytest.raises(ConfigError, match="suse"):
            detect(p)


def test_gentoo_gate() -> None:
    ok = _p({"/etc/gentoo-release": "Gentoo Base System release 2.14\n"})
    assert detect(ok).version == "2.14"
    with pytest.raises(ConfigError, match=r"^unrecognized gentoo version: Gentoo 2$"):
        detect(_p({"/etc/gentoo-release": "Gentoo 2\n"}))


# --- architecture -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "arch"),
    [
        (ELF64_LE + b"\x3e\x00", "amd64"),
        (ELF32_LE + b"\x03\x00", "i386"),
        (ELF32_LE + b"\x28\x00", "armhf"),
        (ELF64_LE + b"\xb7\x00", "arm64"),
        (ELF64_LE + b"\xf3\x00", "riscv64"),
        (ELF32_LE + b"\xf3\x00", "riscv32"),
        (ELF64_LE + b"\x99\x00", None),
        (b"#!/bin/sh\n" + b"\x00" * 10, None),
        (b"\x7fELF", None),
    ],
)
def test_elf_arch(header: bytes, arch: str | None) -> None:
    assert elf_arch(header) == arch


def test_arch_from_bin_sh_symlink(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {"/usr/bin/dash": ELF32_LE + b"\x03\x00" + b"\x00" * 100},
        {"/bin/sh": "/usr/bin/dash"},
    )
    assert detect_arch(root) == "i386"
    assert resolve_arch(root) == ("i386", ["Detected container architecture: i386"])


def test_arch_fallback_and_unmanaged(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, {"/usr/bin/dash": ELF64_LE + b"\x3e\x00"}, {"/bin/sh": "/usr/bin/dash"}
    )
    assert detect_arch(root, "unmanaged") is None  # unmanaged: the root is not even looked at
    arch, messages = resolve_arch(root, "unmanaged")
    assert arch == "amd64"
    assert messages[-1] == "Use `pct set VMID --arch ARCH` to change."
    empty = make_root(tmp_path / "x", {})
    assert detect_arch(empty) is None
