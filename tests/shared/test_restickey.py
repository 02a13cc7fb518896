"""restic key files made and read here, checked against real restic both ways: a key that
restic made opens here with its password, and restic opens its repository with a key made
here (and refuses it with any other password)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from shared import restickey
from shared.errors import StorageError

PASSWORD = "correct horse"


def restic(repo: Path, password_file: Path, *args: str, hint: str | None = None) -> bytes:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo.parent),
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD_FILE": str(password_file),
        "RESTIC_CACHE_DIR": str(repo.parent / "c"),
    }
    if hint:
        env["RESTIC_KEY_HINT"] = hint
    proc = subprocess.run(["restic", "--quiet", *args], env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")  # restic strips the newline
    restic(tmp_path / "repo", pw, "init")
    return tmp_path / "repo", pw


def test_a_key_restic_made_opens_here_with_its_password(repo: tuple[Path, Path]) -> None:
    path, pw = repo
    (key,) = (path / "keys").iterdir()
    master = restickey.parse_master(restic(path, pw, "cat", "masterkey"))
    assert restickey.open_key_file(key.read_bytes(), PASSWORD) == master
    assert restickey.key_id(key.read_bytes()) == key.name  # a key file's name is its hash
    with pytest.raises(StorageError, match="wrong password"):
        restickey.open_key_file(key.read_bytes(), PASSWORD + "x")
    doc = json.loads(key.read_bytes())
    hostile_values = [("N", 1 << 30), ("r", 0), ("p", 1 << 20), ("N", 1), ("N", 4095)]
    hostile_values.append(("p", 1024))  # with N 32768 and r 8: a minute of scrypt
    for field, value in hostile_values:
        hostile = {**doc, "N": 32768, "r": 8, field: value}  # gigabytes, or minutes
        with pytest.raises(StorageError, match="scrypt parameters out of range"):
            restickey.open_key_file(json.dumps(hostile).encode(), PASSWORD)
    # what restic itself chose on a loaded run (N 32768, r 8, p 9): it was refused as hostile,
    # and the storage's own key could not be added. Now it is derived: it opens the key when it
    # is what restic chose this time, else the password does not fit those parameters
    for parallel in (9, 10):
        calibrated = json.dumps({**doc, "N": 32768, "r": 8, "p": parallel}).encode()
        try:
            restickey.open_key_file(calibrated, PASSWORD)
        except StorageError as err:
            assert "wrong password" in str(err), err


def test_restic_opens_the_repository_with_a_key_made_here(repo: tuple[Path, Path]) -> None:
    path, pw = repo
    restic(path, pw, "backup", str(pw))
    master = restickey.parse_master(restic(path, pw, "cat", "masterkey"))
    secret = restickey.new_secret()
    data = restickey.key_file(master, secret, hostname="node1")
    name = restickey.key_id(data)
    (path / "keys" / name).write_bytes(data)
    fast = path.parent / "fast"
    fast.write_text(secret)
    keys = json.loads(restic(path, fast, "key", "list", "--json", hint=name))
    mine = [k for k in keys if k["current"]]
    assert [(k["id"], k["userName"], k["hostName"]) for k in mine] == [(name[:8], "ctkit", "node1")]
    # the same repository, data readable with the new key
    (snap,) = json.loads(restic(path, fast, "snapshots", "--json", hint=name))
    assert restic(path, fast, "dump", snap["id"], str(pw), hint=name) == pw.read_bytes()
    assert json.loads(data)["N"] == restickey.SCRYPT_N  # the cheap parameters, not restic's
    # the old password still works; a wrong one opens neither key
    restic(path, pw, "cat", "config")
    fast.write_text(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    proc = subprocess.run(["restic", "-r", str(path), "--password-file", str(fast), "cat",
                           "config"], capture_output=True, check=False)  # fmt: skip
    assert proc.returncode != 0 and b"wrong password" in proc.stderr


def test_a_sealed_box_is_authenticated() -> None:
    keys = restickey.Keys(os.urandom(32), os.urandom(16), os.urandom(16))
    sealed = restickey.seal(keys, b"master keys")
    assert restickey.unseal(keys, sealed) == b"master keys"
    assert sealed[16:-16] != b"master keys"
    for flip in (0, 20, len(sealed) - 1):  # nonce, ciphertext, MAC
        bad = bytearray(sealed)
        bad[flip] ^= 1
        with pytest.raises(StorageError):
            restickey.unseal(keys, bytes(bad))
    with pytest.raises(StorageError):
        restickey.unseal(keys, sealed[:31])


@pytest.mark.parametrize(
    "text",
    [b"", b"[]", b"{}", b'{"mac":{"k":"AA==","r":"AA=="},"encrypt":"AA=="}', b"x" * 5000,
     b'{"mac":{"k":1,"r":2},"encrypt":3}', b'{"mac":{"k":"!!","r":"!!"},"encrypt":"!!"}'],
)  # fmt: skip
def test_a_master_key_of_the_wrong_shape_is_refused(text: bytes) -> None:
    with pytest.raises(StorageError, match="unexpected format"):
        restickey.parse_master(text)


def test_master_keys_print_as_restic_reads_them() -> None:
    keys = restickey.Keys(bytes(range(32)), bytes(range(16)), bytes(range(16, 32)))
    assert restickey.parse_master(restickey.master_json(keys)) == keys
    assert json.loads(restickey.master_json(keys))["mac"]["k"] == "AAECAwQFBgcICQoLDA0ODw=="


def test_a_record_names_its_repository(tmp_path: Path) -> None:
    path = tmp_path / "s.key.json"
    key = "ab" * 32
    path.write_bytes(restickey.record(key, "/srv/repo"))
    assert restickey.read_record(path, "/srv/repo") == key
    assert restickey.read_record(path, "/srv/other") is None  # the repository was changed
    assert restickey.read_attempt(path, "/srv/repo") is None  # a key, not a failed try
    path.write_bytes(restickey.attempt("/srv/repo", 1234.5))
    assert restickey.read_attempt(path, "/srv/repo") == 1234.5
    assert restickey.read_record(path, "/srv/repo") is None
    assert restickey.read_attempt(path, "/srv/other") is None
    path.write_bytes(restickey.record(key, "/srv/repo"))
    for damaged in (b"", b"{", b'{"key": "x", "repository": "/srv/repo"}', b"[1]"):
        path.write_bytes(damaged)
        assert restickey.read_record(path, "/srv/repo") is None
    link = tmp_path / "link.json"
    (tmp_path / "real").write_bytes(restickey.record(key, "/srv/repo"))
    link.symlink_to(tmp_path / "real")
    assert restickey.read_record(link, "/srv/repo") is None
    assert restickey.read_record(tmp_path / "missing", "/srv/repo") is None
    restickey.discard(tmp_path / "secret", link)
    assert not link.is_symlink()
