"""Proxmox's 33 setup test vectors, run through the upstream harness (guest-setup.md A.1).

Each vector's root file system is rebuilt from the reference markdown (read in place), the
post-create hook runs twice (idempotency) with the harness's password, key, zero UUID,
test-mode DNS and Perl's ``srand(0)`` sequence, and every expected file is compared after each
run.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.guest.config import GuestConfig
from shared.guest.detect import detect_arch
from shared.guest.files import perl_lines
from shared.guest.random48 import PerlRand
from shared.guest.setup import GuestSetup
from tests.conftest import HANDBOOK, reference_file

from .helpers import debian_root, make_root, read, setup_for
from .refdata import Expect, Vector, parse

REFERENCE = "pve-container-setup-tests.md"
TESTMODE_DNS = (["8.8.8.8", "8.8.8.9"], ["proxmox.com"])
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
PASSWORD = "$5$SALT$PASS"
SSH_KEYS = "ssh-rsa ABCDEFG ABC@DEF"


def _names() -> list[str]:
    path = HANDBOOK / "reference" / REFERENCE
    if not path.exists():
        return ["reference-data-absent"]  # the test itself skips via reference_file()
    return [vector.name for vector in parse(path)]


def _vector(name: str) -> Vector:
    vectors = {v.name: v for v in parse(reference_file(REFERENCE))}
    return vectors[name]


def build_rootfs(vector: Vector, root: Path) -> None:
    """The test directory as upstream has it: input files plus the directories of the .exp files."""
    root.mkdir()
    for expect in vector.expects:
        (root / expect.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    for path, content in vector.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    for path, link in vector.symlinks.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(link)


def check(expect: Expect, vector: Vector, root: Path) -> None:
    actual_path = root / expect.path.lstrip("/")
    if expect.kind == "skip":
        return
    assert actual_path.is_file() and not actual_path.is_symlink(), f"{expect.path} missing"
    actual = actual_path.read_text()
    if expect.kind == "exact":
        wanted = expect.text
        if expect.path == "/etc/network/interfaces" and actual == wanted + "\n":
            # the markdown cannot show the blank line that ends the last stanza upstream
            wanted += "\n"
        assert actual == wanted, f"{expect.path} differs"
    elif expect.kind == "unchanged":
        assert actual == vector.files[expect.path], f"{expect.path} changed"
    else:
        today = int(time.time() // 86400)
        try:
            _check_days(vector.files[expect.path], actual, expect, today)
        except AssertionError:
            # the setup wrote its day a moment ago: before midnight UTC, on a run across it
            _check_days(vector.files[expect.path], actual, expect, today - 1)


def _check_days(before: object, actual: str, expect: Expect, days: int) -> None:
    """The expected diff with ``@DAYS@`` (days since the epoch, as shadow counts) as ``days``."""
    removed = [line.replace("@DAYS@", str(days)) for line in expect.removed]
    added = [line.replace("@DAYS@", str(days)) for line in expect.added]
    check_diff(str(before), actual, removed, added, expect.path)


def _without(lines: list[str], items: list[str]) -> list[str]:
    """``lines`` minus one occurrence per item (the last one: a dropped trailing blank line)."""
    out = list(lines)
    for item in items:
        assert item in out, f"line {item!r} not found"
        del out[len(out) - 1 - out[::-1].index(item)]
    return out


def check_diff(before: str, after: str, removed: list[str], added: list[str], path: str) -> None:
    old, new = perl_lines_keep_blank(before), perl_lines_keep_blank(after)
    assert after.endswith("\n"), f"{path} lacks its final newline"
    assert _without(old, removed) == _without(new, added), f"{path}: unexpected line changes"
    positions = [new.index(line) for line in added]
    assert positions == sorted(positions), f"{path}: added lines out of order"


def perl_lines_keep_blank(text: str) -> list[str]:
    """Lines of a file; a final empty line (text ending in two newlines) counts as a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@pytest.mark.parametrize("name", _names())
def test_upstream_vector(name: str, tmp_path: Path) -> None:
    vector = _vector(name)
    root = tmp_path / "rootfs"
    build_rootfs(vector, root)
    cfg = GuestConfig.from_pct_conf(100, vector.config)
    log: list[str] = []
    setup = GuestSetup.for_rootfs(
        root, cfg, host_dns=TESTMODE_DNS, log=log.append, uuid_factory=lambda: ZERO_UUID
    )
    if cfg.arch is None and (root / "bin/sh").is_symlink():
        assert detect_arch(root, setup.ostype) == "amd64"
    for _run in range(2):  # twice: the hook must be idempotent
        setup.rng = PerlRand(0)  # the harness's srand(0)
        setup.post_create(password=PASSWORD, ssh_keys=SSH_KEYS)
        for expect in vector.expects:
            check(expect, vector, root)
    assert not [w for w in setup.warnings if "unexpected ostype" in w]


def test_reference_has_33_vectors() -> None:
    vectors = parse(reference_file(REFERENCE))
    assert len(vectors) == 33
    assert all(v.expects for v in vectors)


def test_debian_013_host_target_untouched(tmp_path: Path) -> None:
    """The escaping /etc/hosts symlink is replaced inside the CT; its host-side target stays."""
    vector = _vector("test-debian-013")
    root = tmp_path / "a" / "b" / "rootfs"
    root.parent.mkdir(parents=True)
    build_rootfs(vector, root)
    outside = root.parent / "bad-path.txt"  # where ../../bad-path.txt points from /etc
    outside.write_text("host data\n")
    assert os.path.realpath(root / "etc/hosts") == str(outside)
    cfg = GuestConfig.from_pct_conf(100, vector.config)
    setup = GuestSetup.for_rootfs(root, cfg, host_dns=TESTMODE_DNS, log=lambda _m: None)
    setup.post_create(password=PASSWORD, ssh_keys=SSH_KEYS)
    assert outside.read_text() == "host data\n"
    assert not (root / "etc/hosts").is_symlink()
    assert perl_lines((root / "etc/hosts").read_text())[-2] == "127.0.1.1 localhost"


# --- pct.md §9 cases 47/48 and detection through GuestSetup ------------------------------------


def test_case_47_unknown_os_fails(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": 'ID="istoreos"\n'})
    log: list[str] = []
    with pytest.raises(ConfigError, match=r"^unable to detect OS distribution$"):
        setup_for(root, {}, log=log)
    assert log == ["WARN: unknown ID 'istoreos' in /etc/os-release file, trying fallback detection"]


def test_case_48_mismatch_uses_detected_plugin(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    setup = setup_for(root, {"ostype": "centos", "hostname": "a.b"})
    assert setup.ostype == "debian" and setup.version == "12"
    assert setup.warnings == ["got unexpected ostype (debian != centos)"]
    setup.pre_start()
    assert read(root, "/etc/hostname") == "a\n"  # Debian's rule, not CentOS's FQDN


def test_mismatch_without_etc(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    setup = setup_for(root, {"ostype": "debian"})
    assert setup.ostype == "unmanaged"
    assert setup.warnings[1:] == [
        "got unexpected ostype (unmanaged != debian)",
        "WARNING: /etc not present in CT, is the rootfs mounted?",
    ]


def test_version_gate_error_surfaces(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/os-release": "ID=fedora\nVERSION_ID=20\n"})
    with pytest.raises(ConfigError, match=r"^unsupported Fedora release '20'$"):
        setup_for(root, {})


def test_regenerate_ssh_host_keys(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    root = debian_root(tmp_path, extra={"/etc/ssh/sshd_config": ""})
    log: list[str] = []
    setup = setup_for(root, {"hostname": "web.example", "unprivileged": "1"}, log=log)
    setup.regenerate_ssh_host_keys()
    for key_type in ("rsa", "ecdsa", "ed25519"):
        private = root / f"etc/ssh/ssh_host_{key_type}_key"
        public = Path(f"{private}.pub")
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
        assert os.stat(private).st_uid == 100000
        assert public.read_text().rstrip().endswith(" root@web")
        assert (
            f"Creating SSH host key 'ssh_host_{key_type}_key' - this may take some time ..." in log
        )
    assert sum(line.startswith("done: SHA256:") for line in log) == 3
    bare = debian_root(tmp_path / "nossh")
    setup_for(bare, {}).regenerate_ssh_host_keys()
    assert not (bare / "etc/ssh").exists()


def test_systemd_nesting_warning(tmp_path: Path) -> None:
    root = debian_root(
        tmp_path, extra={"/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so": ""}
    )
    (root / "sbin").mkdir()
    (root / "sbin/init").symlink_to("/lib/systemd/systemd")
    (root / "lib/systemd").mkdir(parents=True)
    (root / "lib/systemd/systemd").write_text("")
    setup = setup_for(root, {})
    setup.check_systemd_nesting()
    assert setup.warnings == ["Systemd 252 detected. You may need to enable nesting."]
    nested = setup_for(root, {"features": "nesting=1"})
    nested.check_systemd_nesting()
    assert nested.warnings == []
    os.unlink(root / "sbin/init")
    (root / "sbin/init").symlink_to("/bin/busybox")
    sysv = setup_for(root, {})
    sysv.check_systemd_nesting()
    assert sysv.warnings == []
