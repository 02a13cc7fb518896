"""shared.gpg against the real gpg with throw-away keys."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.errors import NotFoundError
from shared.gpg import GpgError, Keyring, normalize_fingerprint
from tests.shared.gpg_keys import TestKeys, export_public, make_keys


@pytest.fixture(scope="module")
def keys() -> Iterator[TestKeys]:
    k = make_keys("alice", "bob")
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "ring")


@pytest.fixture
def signed(tmp_path: Path, keys: TestKeys) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.write_bytes(b"Package: x\n" * 1000)
    sig = tmp_path / "data.asc"
    keys.sign(data, sig, "alice", when=1_700_000_000)
    return data, sig


def test_home_is_private_and_no_agent_is_started(ring: Keyring, keys: TestKeys) -> None:
    assert ring.home is not None
    assert stat.S_IMODE(ring.home.stat().st_mode) == 0o700
    ring.import_file(keys.public["alice"])
    ring.remove(keys.fprs["alice"])
    assert not list(ring.home.glob("S.gpg-agent*"))


def test_import_armoured_and_binary_list_remove(ring: Keyring, keys: TestKeys, tmp_path: Path):
    assert ring.import_file(keys.public["alice"]) == [keys.fprs["alice"]]
    binary = tmp_path / "bob.gpg"
    binary.write_bytes(keys.ring.gpg.export_keys(keys.fprs["bob"], armor=False))
    assert not binary.read_bytes().startswith(b"-----BEGIN")
    assert ring.import_file(binary) == [keys.fprs["bob"]]
    listed = {k.fingerprint: k for k in ring.list_keys()}
    assert set(listed) == {keys.fprs["alice"], keys.fprs["bob"]}
    assert listed[keys.fprs["alice"]].uids == ("ctkit test alice <alice@example.org>",)
    assert listed[keys.fprs["alice"]].created == 1577836800
    ring.remove(keys.fprs["bob"].lower())
    assert [k.fingerprint for k in ring.list_keys()] == [keys.fprs["alice"]]
    with pytest.raises(NotFoundError, match="no key with fingerprint"):
        ring.remove(keys.fprs["bob"])


def test_import_rejects_garbage_and_secret_keys(ring: Keyring, keys: TestKeys, tmp_path: Path):
    junk = tmp_path / "junk.asc"
    junk.write_text("not a key\n")
    with pytest.raises(GpgError, match="no OpenPGP public key"):
        ring.import_file(junk)
    secret = tmp_path / "secret.asc"
    secret.write_text(
        keys.ring.gpg.export_keys(keys.fprs["alice"], secret=True, expect_passphrase=False)
    )
    with pytest.raises(GpgError, match="contains a secret key"):
        ring.import_file(secret)
    assert ring.list_keys() == []
    with pytest.raises(NotFoundError, match="does not exist"):
        ring.import_file(tmp_path / "missing.asc")


def test_verify_good_signature(ring: Keyring, keys: TestKeys, signed: tuple[Path, Path]) -> None:
    ring.import_file(keys.public["alice"])
    data, sig = signed
    result = ring.verify_detached(data, sig)
    valid, fpr, when = result
    assert (valid, fpr, when) == (True, keys.fprs["alice"], 1_700_000_000)
    assert result.signed_by([keys.fprs["alice"]]) == (keys.fprs["alice"], 1_700_000_000)
    assert result.signed_by([keys.fprs["bob"]]) is None
    assert any("Good signature" in m for m in result.messages)


def test_verify_detects_tampering(ring: Keyring, keys: TestKeys, signed: tuple[Path, Path]):
    ring.import_file(keys.public["alice"])
    data, sig = signed
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0x01
    data.write_bytes(bytes(raw))
    result = ring.verify_detached(data, sig)
    assert not result.valid
    assert result.status.startswith("signature bad")
    assert result.signed_by([keys.fprs["alice"]]) is None


def test_verify_unknown_key_and_missing_signature(
    ring: Keyring, keys: TestKeys, signed: tuple[Path, Path], tmp_path: Path
) -> None:
    data, sig = signed
    result = ring.verify_detached(data, sig)
    assert not result.valid
    assert result.status.startswith("no public key")
    empty = tmp_path / "empty.asc"
    empty.write_text("")
    assert not ring.verify_detached(data, empty).valid


def test_sign_detached_binary_and_failure_leaves_nothing(keys: TestKeys, tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.write_text("hello\n")
    sig = tmp_path / "d.sig"
    keys.ring.sign_detached(data, sig, keys.fprs["bob"], armor=False)
    assert not sig.read_bytes().startswith(b"-----BEGIN")
    assert keys.ring.verify_detached(data, sig).fingerprint == keys.fprs["bob"]
    bad = tmp_path / "d.asc"
    with pytest.raises(GpgError, match="unable to sign"):
        keys.ring.sign_detached(data, bad, "0" * 40)
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.sig"]


def test_normalize_fingerprint() -> None:
    fpr = "F4E1 36C6 7CDC E41A E6DE  6FC8 1140 AF8F 639E 0C39"
    assert normalize_fingerprint(fpr) == "F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39"
    assert normalize_fingerprint("0x" + "ab" * 20) == "AB" * 20
    for bad in ("1234", "G" * 40, "A" * 41):
        with pytest.raises(ValueError, match="invalid fingerprint"):
            normalize_fingerprint(bad)
    with pytest.raises(GpgError, match="invalid fingerprint"):
        Keyring.__new__(Keyring).find_key("nope")


def test_signature_by_a_signing_subkey_matches_the_primary_pin(keys: TestKeys, tmp_path: Path):
    params = keys.ring.gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="cert",
        subkey_type="EDDSA",
        subkey_curve="ed25519",
        subkey_usage="sign",
        name_email="sub@example.org",
        expire_date=0,
        no_protection=True,
    )
    primary = str(keys.ring.gpg.gen_key(params).fingerprint)
    info = keys.ring.find_key(primary)
    assert info is not None and len(info.subkeys) == 1
    data, sig = tmp_path / "d", tmp_path / "d.asc"
    data.write_text("x\n")
    keys.ring.sign_detached(data, sig, primary)
    ring = Keyring(tmp_path / "ring")
    ring.import_data(export_public(keys.ring, primary).encode())
    result = ring.verify_detached(data, sig)
    assert result.valid and result.fingerprint == primary
    assert result.signers[0][1] == info.subkeys[0]
    assert result.signed_by([primary]) is not None
    assert result.signed_by([info.subkeys[0]]) is not None
    assert result.signed_by([keys.fprs["alice"]]) is None


def test_a_keyring_that_cannot_be_written_is_named_not_the_key(
    keys: TestKeys, tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    """A full /etc/pveam: the key was refused as if the file held none."""
    home = mount_tmpfs(tmp_path / "ring", "256k")
    ring = Keyring(home)
    ring.import_file(keys.public["alice"])
    # the rest of the file system
    with open(home / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(bytes(4096))
    with pytest.raises(GpgError) as err:
        ring.import_file(keys.public["bob"])
    assert str(err.value) == (
        f"unable to store the key from '{keys.public['bob']}' in '{home}': No space left on device"
    )
    assert [k.fingerprint for k in ring.list_keys()] == [keys.fprs["alice"]]
