"""OS detection, version gates and architecture detection of a container root file system.

Everything that reads the container runs chrooted (``chroot.run_in_root``); the decisions are
pure functions of the collected :class:`Probe`, so they are testable on their own.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.formats.digits import ascii_int
from shared.regularfile import read_regular

from .chroot import run_in_root

PLUGINS = frozenset(
    {
        "debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine",
        "gentoo", "nixos", "openeuler",
    }
)  # fmt: skip
ALIASES = {
    "opensuse-leap": "opensuse",
    "opensuse-tumbleweed": "opensuse",
    "opensuse-slowroll": "opensuse",
    "sles": "opensuse",
    "rocky": "centos",
    "almalinux": "centos",
    "arch": "archlinux",
    "openEuler": "openeuler",
}
PROBE_FILES = (
    "/etc/os-release", "/usr/lib/os-release", "/etc/lsb-release", "/etc/debian_version",
    "/etc/devuan_version", "/etc/SuSE-brand", "/etc/SuSE-release", "/etc/fedora-release",
    "/etc/centos-release", "/etc/redhat-release", "/etc/arch-release", "/etc/alpine-release",
    "/etc/gentoo-release", "/etc/openEuler-release",
)  # fmt: skip
PROBE_LIMIT = 65536  # release files are tiny; never read more from an untrusted file

DEBIAN_CODENAMES = {
    "stretch/sid": 9, "buster/sid": 10, "bullseye/sid": 11, "bookworm/sid": 12,
    "trixie/sid": 13, "forky/sid": 14, "duke/sid": 15, "kali-rolling": 12,
}  # fmt: skip
DEBIAN_MIN, DEBIAN_TESTED = 4, 14
DEVUAN_CODENAMES = {
    "jessie": 8, "ascii": 9, "beowulf": 10, "chimaera": 11, "daedalus": 12, "excalibur": 13,
}  # fmt: skip
UBUNTU_KNOWN = frozenset(
    ["12.04", "14.04", "15.04", "15.10", "16.04", "16.10"]
    + [f"{year}.{month}" for year in range(17, 27) for month in ("04", "10")]
)
ELF_MACHINES = {0x03: "i386", 0x3E: "amd64", 0x28: "armhf", 0xB7: "arm64", 0xF3: "riscv"}
FALLBACK_ARCH = "amd64"
UNDETECTABLE = "unable to detect OS distribution"
SYSTEMD_LIB_RE = re.compile(r"libsystemd-shared-(\d+)(?:[-.][a-zA-Z0-9]+)*\.so")
NO_OS_RELEASE = (
    "/etc/os-release file not found and autodetection failed, falling back to 'unmanaged'"
)


@dataclass
class Probe:
    """What detection looks at: release files (``None`` = absent) and a few directories."""

    files: dict[str, str | None] = field(default_factory=dict)
    nix_store: bool = False
    etc: bool = True

    def get(self, path: str) -> str | None:
        return self.files.get(path)

    def firstline(self, path: str) -> str | None:
        text = self.files.get(path)
        return None if text is None else text.split("\n", 1)[0].rstrip("\r")

    def os_release(self) -> dict[str, str] | None:
        text = self.get("/etc/os-release")
        if text is None:
            text = self.get("/usr/lib/os-release")
        return None if text is None else parse_os_release(text)


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) assignments; quoted values unescaped, comments ignored."""
    result: dict[str, str] = {}
    for line in text.split("\n"):
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not match:
            continue
        name, raw = match.group(1), match.group(2).strip()
        if quoted := re.match(r"'([^']*)'", raw):
            result[name] = quoted.group(1)
        elif quoted := re.match(r'"((?:[^"\\]|\\.)*)"', raw):
            result[name] = re.sub(r"\\(.)", r"\1", quoted.group(1))
        else:
            result[name] = re.match(r"[^\s#]*", raw).group(0)  # type: ignore[union-attr]
    return result


# --- probing (runs chrooted) ---------------------------------------------------------------


def _read_small(path: str) -> str | None:
    # opened without waiting and checked on the descriptor: a running CT can swap a FIFO in
    # after any look at the path, and a blocked read held the config lock for good
    found = read_regular(path, PROBE_LIMIT)
    if found is None:
        return None
    return found[0][:PROBE_LIMIT].decode("utf-8", "surrogateescape")


def _probe_inside() -> dict[str, Any]:
    return {
        "files": {path: _read_small(path) for path in PROBE_FILES},
        "nix_store": os.path.isdir("/nix/store"),
        "etc": os.path.isdir("/etc"),
    }


def probe_rootfs(rootdir: Path) -> Probe:
    data = run_in_root(rootdir, _probe_inside)
    return Probe(files=data["files"], nix_store=data["nix_store"], etc=data["etc"])


# --- decisions -------------------------------------------------------------------------------


def classify(probe: Probe) -> tuple[str | None, list[str]]:
    """The plugin name for a probe plus warnings; ``None`` when an os-release names nothing
    known and no fallback file fits (``unable to detect OS distribution``)."""
    warnings: list[str] = []
    os_release = probe.os_release()
    os_id = (os_release or {}).get("ID")
    if os_id:
        if os_id in PLUGINS:
            return os_id, warnings
        if os_id in ALIASES:
            return ALIASES[os_id], warnings
        warnings.append(f"unknown ID '{os_id}' in /etc/os-release file, trying fallback detection")
    found = _fallback(probe)
    if found is not None:
        return found, warnings
    if os_release is not None:
        return None, warnings
    warnings.append(NO_OS_RELEASE)
    return "unmanaged", warnings


def _fallback(probe: Probe) -> str | None:
    lsb = probe.get("/etc/lsb-release")
    if lsb is not None and re.search(r"^DISTRIB_ID=Ubuntu$", lsb, re.MULTILINE | re.IGNORECASE):
        return "ubuntu"
    checks: list[tuple[tuple[str, ...], str]] = [
        (("/etc/debian_version",), "debian"),
        (("/etc/devuan_version",), "devuan"),
        (("/etc/SuSE-brand", "/etc/SuSE-release"), "opensuse"),
        (("/etc/fedora-release",), "fedora"),
        (("/etc/centos-release", "/etc/redhat-release"), "centos"),
        (("/etc/arch-release",), "archlinux"),
        (("/etc/alpine-release",), "alpine"),
        (("/etc/gentoo-release",), "gentoo"),
    ]
    for paths, ostype in checks:
        if any(probe.get(p) is not None for p in paths):
            return ostype
    if probe.nix_store:
        return "nixos"
    if probe.get("/etc/openEuler-release") is not None:
        return "openeuler"
    return None


def check_version(ostype: str, probe: Probe) -> tuple[str | None, list[str]]:
    """The distribution version the plugin works with, after the version gates of each distro."""
    os_release = probe.os_release() or {}
    checker = _VERSION_CHECKS.get(ostype)
    if checker is None:
        return None, []
    return checker(probe, os_release)


def _debian(probe: Probe, _osr: dict[str, str]) -> tuple[str | None, list[str]]:
    raw = probe.firstline("/etc/debian_version")
    if raw is None:
        raise ConfigError("unable to read version info")
    value = str(DEBIAN_CODENAMES.get(raw, raw))
    match = re.match(r"(\d+)(?:\.\d+)?(?:\.\d+)?", value)
    if not match:
        raise ConfigError(f"unable to parse version info '{value}'")
    version = int(match.group(1))
    if version < DEBIAN_MIN:
        raise ConfigError(f"Container Debian version '{version}' is too old")
    warnings = []
    if version > DEBIAN_TESTED:
        warnings.append(
            f"The container's Debian version '{version}' is newer than the tested version "
            f"'{DEBIAN_TESTED}'. While everything may work fine, full compatibility cannot be "
            "guaranteed. Please check for PVE system updates."
        )
    return str(version), warnings


def _devuan(probe: Probe, _osr: dict[str, str]) -> tuple[str | None, list[str]]:
    raw = probe.firstline("/etc/devuan_version")
    if raw is None:
        raise ConfigError("unable to read version info")
    name = raw.strip().split("/", 1)[0]
    if name in DEVUAN_CODENAMES:
        return str(DEVUAN_CODENAMES[name]), []
    if match := re.fullmatch(r"(\d+)(?:\.\d+)*", name):  # numbered releases: Devuan n = Debian n+7
        return str(int(match.group(1)) + 7), []
    raise ConfigError(f"unsupported Devuan version '{raw}'")


def _ubuntu(probe: Probe, osr: dict[str, str]) -> tuple[str | None, list[str]]:
    lsb = probe.get("/etc/lsb-release")
    version = None
    if lsb is not None:
        if not re.search(r"^DISTRIB_ID=Ubuntu$", lsb, re.MULTILINE | re.IGNORECASE):
            raise ConfigError("got unknown DISTRIB_ID")
        if match := re.search(r"^DISTRIB_RELEASE=(\d+\.\d+)$", lsb, re.MULTILINE | re.IGNORECASE):
            version = match.group(1)
    elif re.fullmatch(r"\d+\.\d+", osr.get("VERSION_ID", "")):
        version = osr["VERSION_ID"]  # no lsb-release: os-release says the same
    if version is None:
        raise ConfigError("unable to read version info")
    if version in UBUNTU_KNOWN:
        return version, []
    if int(version.split(".")[0]) < 17:
        raise ConfigError(f"unsupported ancient Ubuntu version '{version}'")
    return version, [
        f"The container's Ubuntu version '{version}' is not in the known version list. As it's "
        "newer than the minimum supported version it's likely to work OK, but full "
        "compatibility cannot be guaranteed. Please check for PVE system updates."
    ]


def _alpine(probe: Probe, osr: dict[str, str]) -> tuple[str | None, list[str]]:
    return probe.firstline("/etc/alpine-release") or osr.get("VERSION_ID") or None, []


def _centos(probe: Probe, _osr: dict[str, str]) -> tuple[str | None, list[str]]:
    release = probe.firstline("/etc/redhat-release") or probe.firstline("/etc/centos-release")
    if release is None:
        raise ConfigError("unable to read version info")
    match = re.search(r"release\s+(\d+)(?:\.(\d+))?", release)
    if not match:
        raise ConfigError(f"unsupported centos version '{release}'")
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    if not 5 <= int(match.group(1)) < 11:
        raise ConfigError(f"unsupported centos version '{version}'")
    return version, []


def _fedora(probe: Probe, osr: dict[str, str]) -> tuple[str | None, list[str]]:
    version = osr.get("VERSION_ID")
    if version is None and (release := probe.firstline("/etc/fedora-release")):
        match = re.search(r"release\s+(\d+)", release)
        version = match.group(1) if match else release
    number = ascii_int(version) if version is not None else None
    if number is None or number < 22:
        raise ConfigError(f"unsupported Fedora release '{version}'")
    return version, []


def _opensuse(_probe: Probe, osr: dict[str, str]) -> tuple[str | None, list[str]]:
    version = osr.get("VERSION_ID", "")
    if match := re.fullmatch(r"(\d+)\.(\d+)", version):
        major, minor = int(match.group(1)), int(match.group(2))
        ok = major >= 42 or major in (15, 16) or (major == 13 and minor <= 2)
        ok = ok or (osr.get("ID") == "sles" and major == 12)
        if not ok:
            raise ConfigError(f"unsupported suse release '{version}'")
        return version, []
    if match := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", version):
        year, month, day = (int(g) for g in match.groups())
        if year < 2017 or month > 12 or day > 31:
            raise ConfigError(f"unsupported suse tumbleweed release '{version}'")
        return version, []
    raise ConfigError(f"unrecognized suse release '{version}'")


def _gentoo(probe: Probe, _osr: dict[str, str]) -> tuple[str | None, list[str]]:
    release = probe.firstline("/etc/gentoo-release")
    if release is None:
        raise ConfigError("unable to read version info")
    match = re.fullmatch(r"gentoo base system release (.*)", release, re.IGNORECASE)
    if not match:
        raise ConfigError(f"unrecognized gentoo version: {release}")
    return match.group(1), []


def _openeuler(_probe: Probe, osr: dict[str, str]) -> tuple[str | None, list[str]]:
    version = osr.get("VERSION_ID")
    match = re.match(r"(\d+)", version or "")
    if not match or int(match.group(1)) < 24:
        raise ConfigError(f"unsupported openEuler release '{version}'")
    return version, []


_VERSION_CHECKS = {
    "debian": _debian,
    "devuan": _devuan,
    "ubuntu": _ubuntu,
    "alpine": _alpine,
    "centos": _centos,
    "fedora": _fedora,
    "opensuse": _opensuse,
    "gentoo": _gentoo,
    "openeuler": _openeuler,
}


# --- architecture ------------------------------------------------------------------------------


def elf_arch(header: bytes) -> str | None:
    """Debian architecture name from the first 20 bytes of an ELF file, ``None`` if unknown."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    elf_class, data = header[4], header[5]
    machine = int.from_bytes(header[18:20], "big" if data == 2 else "little")
    arch = ELF_MACHINES.get(machine)
    if arch == "riscv":
        return {1: "riscv32", 2: "riscv64"}.get(elf_class)
    return arch


def _arch_inside(nixos: bool) -> str | None:
    def header(path: str) -> bytes:
        found = read_regular(path, 20)
        return found[0][:20] if found is not None else b""

    arch = None if nixos else elf_arch(header("/bin/sh"))
    if arch is None and (nixos or os.path.isdir("/nix/store")):
        # NixOS has /bin/sh only after first boot; /sbin/init's shebang names the real shell.
        match = re.match(r"#! ?(\S*)", _read_small("/sbin/init") or "")
        if match:
            arch = elf_arch(header(match.group(1)))
    return arch


def detect_arch(rootdir: Path, ostype: str | None = None) -> str | None:
    """Architecture from the ELF header of ``/bin/sh`` (NixOS: ``/sbin/init``'s interpreter)."""
    if ostype == "unmanaged":
        return None
    result = run_in_root(Path(rootdir), lambda: _arch_inside(ostype == "nixos"))
    return None if result is None else str(result)


def _systemd_version_inside() -> int | None:
    init = os.path.realpath("/sbin/init")
    if not init.endswith("/systemd"):
        return None
    dirs = [os.path.dirname(init), "/usr/lib/systemd", "/lib/systemd", "/usr/lib64/systemd"]
    # Debian keeps the library in /usr/lib/<triplet>/systemd
    for base in ("/usr/lib", "/lib"):
        with contextlib.suppress(OSError):
            dirs += [
                f"{base}/{name}/systemd" for name in sorted(os.listdir(base)) if "-linux-" in name
            ]
    for directory in dirs:
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                if match := SYSTEMD_LIB_RE.fullmatch(name):
                    return int(match.group(1))
    return None


def systemd_version(rootdir: Path) -> int | None:
    """Major version of the container's systemd (from ``libsystemd-shared-<v>.so``), if PID 1."""
    result = run_in_root(Path(rootdir), _systemd_version_inside)
    return None if result is None else int(result)


def resolve_arch(rootdir: Path, ostype: str | None = None) -> tuple[str, list[str]]:
    """Detected architecture or ``amd64``, with the messages ``pct create`` prints."""
    arch = detect_arch(rootdir, ostype)
    if arch is not None:
        return arch, [f"Detected container architecture: {arch}"]
    return FALLBACK_ARCH, [
        f"Architecture detection failed, falling back to {FALLBACK_ARCH}.",
        "Use `pct set VMID --arch ARCH` to change.",
    ]
