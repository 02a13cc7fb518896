"""Root password for /etc/shadow: crypt strings kept verbatim, clear text hashed as SHA-512 crypt.

SHA-512 crypt is implemented here from Ulrich Drepper's specification ("Unix crypt using
SHA-256 and SHA-512", the ``$6$`` scheme of glibc) because Python's ``crypt`` module is
deprecated and gone in 3.13.
"""

from __future__ import annotations

import re

CRYPT_RE = re.compile(r"\$(?:1|2[axy]?|5|6)\$[a-zA-Z0-9./]{1,16}\$[a-zA-Z0-9./]+")
B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROUNDS_DEFAULT = 5000
# Bytes of a password, as Debian's crypt() (libxcrypt: 512 with the NUL) takes at most:
# SHA-crypt hashes the password once per byte of it, so 100,000 characters were 10 GB to hash
MAX_PASSPHRASE = 511
ROUNDS_MIN, ROUNDS_MAX = 1000, 999_999_999
LOCKED = "*"

# Byte order of the final 64-byte digest in the output, three bytes per group (spec step 22).
_PERMUTATION = [
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
    (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
    (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
    (18, 39, 60), (40, 61, 19), (62, 20, 41),
]  # fmt: skip


def is_crypt_string(value: str) -> bool:
    """Whether ``value`` already is a crypt hash (``$1$``, ``$2[axy]$``, ``$5$``, ``$6$``)."""
    return CRYPT_RE.fullmatch(value) is not None


def make_salt(length: int = 8) -> str:
    import secrets  # (loads random: only when a password is set)

    return "".join(secrets.choice(B64) for _ in range(length))


def shadow_hash(password: str | None) -> str:
    """The shadow field for a requested password: verbatim hash, new SHA-512 hash, or locked."""
    if password is None:
        return LOCKED
    if is_crypt_string(password):
        return password
    return sha512_crypt(password, make_salt())


def _b64_from_24bit(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(B64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // 64 + 1))[:length]


def sha512_crypt(password: str, salt: str, rounds: int | None = None) -> str:
    """``$6$[rounds=N$]salt$hash`` for ``password`` (salt truncated to 16 characters)."""
    import hashlib  # only with a password to set: it loads OpenSSL

    key = password.encode("utf-8")
    if len(key) > MAX_PASSPHRASE:
        raise ValueError(f"a password may only be {MAX_PASSPHRASE} bytes long")
    salt_b = salt.encode("ascii")[:16]
    custom = rounds is not None
    n = min(max(rounds if rounds is not None else ROUNDS_DEFAULT, ROUNDS_MIN), ROUNDS_MAX)

    alt = hashlib.sha512(key + salt_b + key).digest()
    ctx = hashlib.sha512(key + salt_b + _repeat(alt, len(key)))
    length = len(key)
    while length:
        ctx.update(alt if length & 1 else key)
        length >>= 1
    a = ctx.digest()

    p_bytes = _repeat(hashlib.sha512(key * len(key)).digest(), len(key))
    s_bytes = _repeat(hashlib.sha512(salt_b * (16 + a[0])).digest(), len(salt_b))

    c = a
    for i in range(n):
        step = hashlib.sha512(p_bytes if i & 1 else c)
        if i % 3:
            step.update(s_bytes)
        if i % 7:
            step.update(p_bytes)
        step.update(c if i & 1 else p_bytes)
        c = step.digest()

    encoded = "".join(_b64_from_24bit(c[x], c[y], c[z], 4) for x, y, z in _PERMUTATION)
    encoded += _b64_from_24bit(0, 0, c[63], 2)
    prefix = f"$6$rounds={n}$" if custom else "$6$"
    return f"{prefix}{salt_b.decode('ascii')}${encoded}"
