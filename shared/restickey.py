"""This node's own key of a restic repository: a restic key file whose password is 32 random
bytes, sealed with cheap scrypt parameters, and the record that says which key it is.

restic turns a password into the key that opens a repository with scrypt, tuned when the key
is added to take about half a second (0.6-0.7 s on a small host), and it pays that at every
command: the backup of an unchanged container, each listing, each restore. The cost defends a
password that a person chose against guessing. A password of 256 random bits needs no such
defence, so the key that ctkit adds for its own use is sealed with scrypt parameters that cost
about a millisecond. The storage's own password (``restic init``'s key, or the user's) stays
as it is and still opens the repository.

A key file is restic's JSON (design document, "Keys, Encryption and MAC"): the repository's
master keys, sealed with keys derived from the password by scrypt. Sealing is AES-256-CTR
followed by a Poly1305-AES MAC over the ciphertext: ``nonce || ciphertext || mac``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import StorageError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 12, 8, 1  # 4 MiB of memory, about 10 ms here
SALT_LEN = 64  # restic refuses any other length
NONCE_LEN = MAC_LEN = 16
SECRET_BYTES = 32
MAX_MASTER = 4096  # `restic cat masterkey` prints about 200 bytes
MAX_RECORD = 4096
# scrypt needs 128·r·(N + p) bytes, and its time grows with N·r·p. restic calibrates N for at
# most 60 MiB, then raises p until a key takes half a second: p was 9 here on a loaded run (more
# on a faster host), and counting p into the memory refused the key restic had made.
MAX_KDF_MEMORY = 256 << 20
MAX_KDF_WORK = 1 << 27  # N·r·p: a few seconds of CPU at most (restic's own: about 1 << 21)
USERNAME = "ctkit"


@dataclass(frozen=True)
class Keys:
    """An encryption key (32 bytes) and a Poly1305-AES MAC key (k: 16 bytes, r: 16 bytes);
    both the master keys and the keys derived from a password have this shape."""

    encrypt: bytes
    mac_k: bytes
    mac_r: bytes


def _b64(value: object, size: int) -> bytes:
    if not isinstance(value, str):
        raise StorageError("restic master key: unexpected format")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise StorageError("restic master key: unexpected format") from None
    if len(raw) != size:
        raise StorageError("restic master key: unexpected format")
    return raw


def parse_master(text: bytes) -> Keys:
    """The master keys as ``restic cat masterkey`` prints them."""
    if len(text) > MAX_MASTER:
        raise StorageError("restic master key: unexpected format")
    try:
        doc = json.loads(text)
    except ValueError:
        raise StorageError("restic master key: unexpected format") from None
    mac = doc.get("mac") if isinstance(doc, dict) else None
    if not isinstance(mac, dict):
        raise StorageError("restic master key: unexpected format")
    return Keys(_b64(doc.get("encrypt"), 32), _b64(mac.get("k"), 16), _b64(mac.get("r"), 16))


def master_json(keys: Keys) -> bytes:
    def enc(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    doc = {"mac": {"k": enc(keys.mac_k), "r": enc(keys.mac_r)}, "encrypt": enc(keys.encrypt)}
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def derive(secret: str, salt: bytes, n: int, r: int, p: int) -> Keys:
    """scrypt's 64 bytes: the encryption key, then the MAC key as k || r."""
    out = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p + (64 << 20),
        dklen=64,
    )  # fmt: skip
    return Keys(out[:32], out[32:48], out[48:])


def _mac(keys: Keys, nonce: bytes, ciphertext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    # Poly1305-AES: the one-time key is r || AES_k(nonce); r is clamped by Poly1305 itself
    encryptor = Cipher(algorithms.AES(keys.mac_k), modes.ECB()).encryptor()
    s = encryptor.update(nonce) + encryptor.finalize()
    return Poly1305.generate_tag(keys.mac_r + s, ciphertext)


def _ctr(keys: Keys, nonce: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(keys.encrypt), modes.CTR(nonce)).encryptor()
    return cipher.update(data) + cipher.finalize()


def seal(keys: Keys, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    ciphertext = _ctr(keys, nonce, plaintext)
    return nonce + ciphertext + _mac(keys, nonce, ciphertext)


def unseal(keys: Keys, sealed: bytes) -> bytes:
    """The plaintext of a sealed box; StorageError when its MAC does not match."""
    import hmac

    if len(sealed) < NONCE_LEN + MAC_LEN:
        raise StorageError("restic key: sealed data too short")
    nonce, ciphertext, mac = sealed[:NONCE_LEN], sealed[NONCE_LEN:-MAC_LEN], sealed[-MAC_LEN:]
    if not hmac.compare_digest(_mac(keys, nonce, ciphertext), mac):
        raise StorageError("restic key: wrong password or damaged key")
    return _ctr(keys, nonce, ciphertext)  # CTR: the same operation both ways


def new_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(SECRET_BYTES)).rstrip(b"=").decode("ascii")


def key_file(master: Keys, secret: str, *, hostname: str, created: datetime | None = None) -> bytes:
    """A key file that opens the repository of ``master`` with ``secret`` (fields in restic's
    own order)."""
    salt = os.urandom(SALT_LEN)
    user = derive(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    when = (created or datetime.now(UTC)).astimezone(UTC)
    doc = {
        "created": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "username": USERNAME,
        "hostname": hostname,
        "kdf": "scrypt",
        "N": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode("ascii"),
        "data": base64.b64encode(seal(user, master_json(master))).decode("ascii"),
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def open_key_file(data: bytes, secret: str) -> Keys:
    """The master keys in a key file (any scrypt parameters): what restic does on opening."""
    try:
        doc = json.loads(data)
        salt = base64.b64decode(doc["salt"], validate=True)
        sealed = base64.b64decode(doc["data"], validate=True)
        n, r, p = int(doc["N"]), int(doc["r"]), int(doc["p"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StorageError("restic key: unexpected format") from None
    if doc.get("kdf") != "scrypt" or len(salt) != SALT_LEN:
        raise StorageError("restic key: unexpected format")
    power_of_two = n > 1 and n & (n - 1) == 0
    sane = power_of_two and 1 <= r <= 64 and 1 <= p <= 1024
    if not (sane and 128 * r * (n + p) <= MAX_KDF_MEMORY and n * r * p <= MAX_KDF_WORK):
        raise StorageError("restic key: scrypt parameters out of range")  # memory, time
    return parse_master(unseal(derive(secret, salt, n, r, p), sealed))


def key_id(data: bytes) -> str:
    """A key file's name in the repository: the SHA-256 of its content."""
    return hashlib.sha256(data).hexdigest()


def record(key: str, repository: str) -> bytes:
    """What says that the secret beside it opens key ``key`` of ``repository``."""
    return json.dumps({"key": key, "repository": repository}, sort_keys=True).encode() + b"\n"


def attempt(repository: str, when: float) -> bytes:
    """What says that no key could be added to ``repository`` at ``when``."""
    doc = {"key": None, "repository": repository, "tried": when}
    return json.dumps(doc, sort_keys=True).encode() + b"\n"


def _read(path: Path, repository: str) -> dict[str, object] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_RECORD + 1)
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("repository") != repository:
        return None
    return doc


def read_record(path: Path, repository: str) -> str | None:
    """The key id of a record for ``repository``; None for none, another repository's or a
    damaged one (the storage's own password is used then)."""
    key = (_read(path, repository) or {}).get("key")
    if not isinstance(key, str) or len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
        return None
    return key


def read_attempt(path: Path, repository: str) -> float | None:
    """When adding a key to ``repository`` last failed, if that is what the record says."""
    doc = _read(path, repository) or {}
    tried = doc.get("tried")
    return float(tried) if doc.get("key") is None and isinstance(tried, int | float) else None


def discard(secret: Path, record_path: Path) -> None:
    """Forget this node's key (the record first: a secret without it is never used)."""
    for path in (record_path, secret):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
