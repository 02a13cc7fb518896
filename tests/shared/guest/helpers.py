"""Building small container root file systems and running the setup on them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.guest.config import GuestConfig
from shared.guest.setup import GuestSetup

TESTMODE_DNS = (["8.8.8.8", "8.8.8.9"], ["proxmox.com"])
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
DEBIAN_PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/bin/sh\n"
DEBIAN_SHADOW = "root:!*:15908:0:99999:7:::\ndaemon:*:15908:0:99999:7:::\n"


def make_root(
    base: Path, files: dict[str, str | bytes], links: dict[str, str] | None = None
) -> Path:
    """A root file system under ``base/rootfs`` with the given files, symlinks and /root."""
    root = base / "rootfs"
    (root / "root").mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith("/"):
            target.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    for path, link in (links or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(link)
    return root


def debian_root(base: Path, version: str = "12.5", extra: dict[str, str] | None = None) -> Path:
    files = {"/etc/debian_version": f"{version}\n", "/etc/os-release": "ID=debian\n"}
    return make_root(base, {**files, **(extra or {})})


def setup_for(
    root: Path,
    conf: dict[str, str],
    *,
    host_dns: tuple[list[str], list[str]] | None = TESTMODE_DNS,
    log: list[str] | None = None,
    **kw: object,
) -> GuestSetup:
    sink: list[str] = [] if log is None else log
    cfg = GuestConfig.from_pct_conf(100, conf)
    if conf.get("unprivileged") == "1":
        shift_ids(root)
    return GuestSetup.for_rootfs(
        root,
        cfg,
        host_dns=host_dns,
        log=sink.append,
        uuid_factory=lambda: ZERO_UUID,
        **kw,  # type: ignore[arg-type]
    )


def shift_ids(root: Path, base: int = 100000) -> None:
    """Owners as in an unprivileged container's root file system: its ids shifted by ``base``
    (guest setup changes only what the container's root could change itself)."""
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        if st.st_uid < base:
            os.lchown(path, st.st_uid + base, st.st_gid + base)


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


def openssl_crypt(password: str, salt: str) -> str:
    """``password``'s ``$6$`` hash with ``salt`` by ``openssl passwd`` (the test skips without)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    cmd = [openssl, "passwd", "-6", "-salt", salt, "-stdin"]
    out = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, check=True)
    return out.stdout.strip()


def is_hash_of(password: str, hashed: str) -> bool:
    """Whether ``hashed`` (``$6$<salt>$...``) is ``password``'s hash, as openssl computes it."""
    return openssl_crypt(password, hashed.split("$")[2]) == hashed
