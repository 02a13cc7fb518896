"""``pct remote``: pinned host keys, strict checking, what check reports (issue 16)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.pct.conftest import Pct

from .conftest import PCT, Far

pytestmark = pytest.mark.lxc


def test_check_reports_the_remote_ctkit_storages_and_vmid(pct: Pct, far: Far, vmid: int) -> None:
    res = pct("remote", "check", "far", "--vmid", vmid, "--output-format", "json")
    info = json.loads(res.out)
    assert info["compatible"] is True
    assert info["storages"]["fbt"]["type"] == "btrfs"
    assert info["storages"]["local"]["active"] is True
    assert info["vmid_free"] is True
    text = pct("remote", "check", "far").out
    assert "ssh root@" in text and "storage fbt: btrfs" in text


def test_a_remote_root_that_does_not_exist_is_named_not_made(
    pct: Pct, far: Far, tmp_path: Path
) -> None:
    """A remote added with a wrong --root had a skeleton ctkit root made there by its first
    question (the storages' directories), and a migration then failed on a missing storage."""
    missing = far.root.parent / "no-such-root"
    pct("remote", "add", "typo", "--host", far.address, "--hostkey-file", far.hostkey,
        "--identity", far.identity, "--command", PCT, "--root", missing)  # fmt: skip
    res = pct("remote", "check", "typo", check=False)
    assert res.rc != 0 and f"no ctkit root '{missing}' on node " in res.err, res.err
    assert not missing.exists()


def test_a_wrong_host_key_is_refused_not_learned(
    pct: Pct, far: Far, tmp_path: Path, ctroot: Path
) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")])
    pct(
        "remote", "add", "evil", "--host", far.address, "--hostkey-file", tmp_path / "other.pub",
        "--identity", far.identity, "--command", "/bin/true",
    )  # fmt: skip
    res = pct("remote", "check", "evil", check=False)
    assert res.rc == 11
    assert "ssh failed - Host key verification failed." in res.err
    # nothing was learned: the pinned known-hosts file still holds only the configured key
    known = (ctroot / "run/ctkit/ssh/known_hosts.evil").read_text().split()
    assert known[2] == (tmp_path / "other.pub").read_text().split()[1]


def test_add_list_remove_and_validation(pct: Pct, ctroot: Path, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")])
    pub = (tmp_path / "k.pub").read_text().split()
    bad = pct(
        "remote", "add", "x", "--host", "198.18.0.2", "--hostkey", "ssh-rsa " + pub[1], check=False
    )
    assert bad.rc == 2 and "host key blob does not match its type" in bad.err
    missing = pct("remote", "add", "x", "--host", "198.18.0.2", check=False)
    assert missing.rc == 2
    fp = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True
    )
    wrong = pct(
        "remote", "add", "x", "--host", "198.18.0.2", "--hostkey", " ".join(pub),
        "--fingerprint", "SHA256:AAAA",
    check=False)  # fmt: skip
    assert wrong.rc == 7 and "does not match" in wrong.err  # a check that failed (VerifyError)
    pct(
        "remote", "add", "x", "--host", "198.18.0.2", "--port", "2222", "--hostkey", " ".join(pub),
        "--fingerprint", fp.stdout.split()[1],
    )  # fmt: skip
    assert (ctroot / "etc/pve/ctkit-remotes.cfg").stat().st_mode & 0o077 == 0
    listed = json.loads(pct("remote", "list", "--output-format", "json").out)
    assert listed[0]["name"] == "x" and listed[0]["port"] == 2222
    assert (
        pct("remote", "add", "x", "--host", "h", "--hostkey", " ".join(pub), check=False).rc == 12
    )
    pct("remote", "remove", "x")
    assert pct("remote", "list").out == ""
    assert pct("remote", "remove", "x", check=False).rc == 3
