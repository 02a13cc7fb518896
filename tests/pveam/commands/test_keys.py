"""``pveam key add|list|remove`` through the console script: real gpg, the reference keys."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from shared.errors import NotFoundError, ParamError, VerifyError
from tests.conftest import reference_file
from tests.pveam.conftest import Pveam, add_source
from tests.shared.gpg_keys import TestKeys

# the keys Proxmox's trustedkeys.gpg is built from (spec §2.8), pinned by the default sources
REFERENCE = {
    "proxmox-release-bookworm.gpg": ("F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39", "proxmox"),
    "proxmox-release-trixie.gpg": ("24B30F06ECC1836A4E5EFECBA7BCD1420BFE778E", "proxmox"),
    "release@turnkeylinux.com.pubkey": ("694CFF26795A29BAE07B4EB585C25E95A16EB94D", "turnkey"),
}


def test_reference_keys_show_their_pinning_sources(pveam: Pveam) -> None:
    # shipped with the package: listed and pinned before any 'key add'
    listed = {ln.split()[0]: ln.split()[2] for ln in pveam("key", "list").out.splitlines()[1:]}
    assert listed == {fpr: src for fpr, src in REFERENCE.values()}
    for name, (fpr, _) in REFERENCE.items():
        res = pveam("key", "add", str(reference_file(name)))
        assert (res.code, res.err) == (0, "")
        assert res.out.startswith(f"imported key {fpr} ")
    lines = pveam("key", "list").out.splitlines()
    assert lines[0].split() == ["FINGERPRINT", "CREATED", "SOURCES", "UID"]
    listed = {ln.split()[0]: ln.split()[2] for ln in lines[1:]}
    assert listed == {fpr: src for fpr, src in REFERENCE.values()}
    data = json.loads(pveam("key", "list", "--output-format", "json").out)
    assert {k["fingerprint"]: k["sources"] for k in data} == {
        fpr: [src] for fpr, src in REFERENCE.values()
    }
    assert next(k for k in data if k["sources"] == ["turnkey"])["uids"] == [
        "Turnkey Linux Release Key <release@turnkeylinux.com>"
    ]
    sources = pveam("source", "list").out
    assert sources.count("(in keyring)") == 3 and "not in keyring" not in sources


def test_add_list_remove(
    pveam: Pveam, gpg_keys: TestKeys, no_sources: Path, empty_keyring: Path
) -> None:
    trusted, other = gpg_keys.fprs["trusted"], gpg_keys.fprs["other"]
    add_source("mine", "http://example.org", (trusted,))
    res = pveam("key", "add", str(gpg_keys.public["trusted"]))
    assert (res.code, res.out, res.err) == (
        0,
        f"imported key {trusted} ctkit test trusted <trusted@example.org>\n",
        "",
    )
    res = pveam("key", "add", str(gpg_keys.public["other"]))
    assert res.code == 0 and res.err.startswith(f"note: no source pins {other} yet")
    lines = pveam("key", "list").out.splitlines()
    assert [ln.split()[:3] for ln in lines[1:]] == [
        [trusted, "2020-01-01", "mine"],
        [other, "2020-01-01", "-"],
    ]
    res = pveam("key", "remove", trusted.lower())
    assert (res.code, res.out) == (0, "")
    assert res.err == f"note: source(s) mine still pin {trusted}\n"
    assert [ln.split()[0] for ln in pveam("key", "list").out.splitlines()] == [
        "FINGERPRINT",
        other,
    ]
    res = pveam("key", "remove", trusted)
    assert (res.code, res.err) == (
        NotFoundError.exit_code,
        f"no key with fingerprint {trusted} in keyring\n",
    )


@pytest.mark.parametrize(
    ("content", "message", "code"),
    [
        (None, "key file '{}' does not exist", NotFoundError.exit_code),
        (b"not a key\n", "no OpenPGP public key found in", VerifyError.exit_code),
    ],
    ids=["missing", "garbage"],
)
def test_add_refuses_what_is_not_a_public_key(
    pveam: Pveam,
    tmp_path: Path,
    empty_keyring: Path,
    content: bytes | None,
    message: str,
    code: int,
) -> None:
    path = tmp_path / "key.asc"
    if content is not None:
        path.write_bytes(content)
    res = pveam("key", "add", str(path))
    assert res.code == code and res.err.startswith(message.format(path))
    assert pveam("key", "list").out.splitlines()[1:] == []


def test_add_refuses_a_secret_key(pveam: Pveam, gpg_keys: TestKeys, tmp_path: Path) -> None:
    secret = tmp_path / "secret.asc"
    ring = gpg_keys.ring.gpg
    secret.write_text(ring.export_keys(gpg_keys.fprs["stranger"], secret=True, passphrase=""))
    res = pveam("key", "add", str(secret))
    assert (res.code, res.err) == (
        VerifyError.exit_code,
        f"refusing '{secret}': it contains a secret key\n",
    )


def test_remove_needs_a_fingerprint(pveam: Pveam) -> None:
    res = pveam("key", "remove", "1234")
    assert res.code == ParamError.exit_code
    assert "fingerprint: invalid fingerprint '1234' (expected 40 or 64 hex digits)" in res.err
    assert res.err.endswith("pveam key remove <fingerprint>\n")


def test_add_an_expired_key(pveam: Pveam, tmp_path: Path, empty_keyring: Path) -> None:
    """gpg read an expired key as no key at all in a keyring without a trust database; it is
    imported, with a note that its signatures do not count."""
    home, key = tmp_path / "gnupg", tmp_path / "old.asc"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
    try:
        new_key = ["--quick-gen-key", "Old Key <old@example.org>", "ed25519", "sign", "1d"]
        when = ["--faked-system-time", "20200101T000000!"]
        subprocess.run([*gpg, *when, *new_key], check=True, capture_output=True)
        key.write_bytes(subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    res = pveam("key", "add", str(key))
    assert res.code == 0, res
    (fpr,) = [line.split()[2] for line in res.out.splitlines() if line.startswith("imported key")]
    assert f"note: {fpr} expired on 2020-01-02 00:00:00; signatures by it are not accepted" in (
        res.err
    )
    assert fpr in pveam("key", "list").out


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_add_refuses_what_is_not_a_regular_file(
    pveam: Pveam, tmp_path: Path, empty_keyring: Path, kind: str
) -> None:
    """gpg reading a FIFO waited for ever; one reading /dev/zero ran without end."""
    path = tmp_path / "key.asc"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    res = pveam("key", "add", str(path), timeout=20)
    assert (res.code, res.err) == (
        VerifyError.exit_code,
        f"key file '{path}' is not a regular file\n",
    )
