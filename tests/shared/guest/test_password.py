from __future__ import annotations

import subprocess
import warnings

import pytest

from shared.guest.password import (
    MAX_PASSPHRASE,
    is_crypt_string,
    make_salt,
    sha512_crypt,
    shadow_hash,
)

from .helpers import is_hash_of, openssl_crypt

# Test vectors from Ulrich Drepper's SHA-crypt specification.
DREPPER = [
    ("Hello world!", "saltstring", None,
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("Hello world!", "saltstringsaltstring", 10000,
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
    ("we have a short salt string but not a short password", "short", 77777,
     "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"),
    ("a very much longer text to encrypt.  This one even stretches over morethan one line.",
     "anotherlongsaltstring", 1400,
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"),
    ("the minimum number is still observed", "roundstoolow", 10,
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."),
]  # fmt: skip


@pytest.mark.parametrize(("key", "salt", "rounds", "expected"), DREPPER)
def test_drepper_vectors(key: str, salt: str, rounds: int | None, expected: str) -> None:
    assert sha512_crypt(key, salt, rounds) == expected


@pytest.mark.parametrize("password", ["secret12", "pässwörd", "x" * 100, "a b:c$d"])
def test_matches_openssl(password: str) -> None:
    salt = make_salt()
    assert sha512_crypt(password, salt) == openssl_crypt(password, salt)


def test_a_password_longer_than_crypt_takes_is_refused() -> None:
    """SHA-crypt hashes the password once per byte of it: 100,000 characters held 10 GB and
    took a minute. Debian's crypt() (libxcrypt, through perl) takes 511 bytes at most and
    fails beyond; so does this one, with the same hash up to there."""
    salt, longest = make_salt(), "x" * MAX_PASSPHRASE
    libc = ["perl", "-e", "print crypt($ARGV[0], $ARGV[1])"]
    out = subprocess.run([*libc, longest, f"$6${salt}$"], capture_output=True, text=True)
    assert sha512_crypt(longest, salt) == out.stdout
    out = subprocess.run([*libc, longest + "x", f"$6${salt}$"], capture_output=True, text=True)
    assert out.stdout == "*0"  # libxcrypt's failure
    with pytest.raises(ValueError, match="a password may only be 511 bytes long"):
        sha512_crypt("ü" * 256, salt)  # 512 bytes


def test_shadow_hash_rules() -> None:
    assert shadow_hash(None) == "*"
    for given in ("$5$SALT$PASS", "$1$abc$def", "$2y$salt$hash", "$6$abcdefgh$x/y.z"):
        assert shadow_hash(given) == given
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated stdlib crypt involved
        hashed = shadow_hash("secret12")
    assert hashed.startswith("$6$") and len(hashed.split("$")[2]) == 8
    assert len(hashed.split("$")[3]) == 86
    assert is_hash_of("secret12", hashed)
    assert not is_hash_of("secret13", hashed)
    assert shadow_hash("secret12") != hashed  # fresh salt every time


def test_crypt_string_detection() -> None:
    assert is_crypt_string("$6$abcdefgh$" + "a" * 86)
    assert not is_crypt_string("$7$abc$def")
    assert not is_crypt_string("$6$abc")
    assert not is_crypt_string("plain$6$abc$def")
    assert not is_crypt_string("$6$bad salt$def")
