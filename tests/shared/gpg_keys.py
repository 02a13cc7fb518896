"""Throw-away OpenPGP keys for tests: quick unprotected ed25519 keys in a short temp home.

The home lives directly under /tmp because gpg-agent's socket path must stay short; the
agent started for signing is stopped and the home removed by :meth:`TestKeys.close`.
Generating, exporting and stopping the agent are the tests' business: the product only
imports, lists, removes, signs and verifies.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shared.gpg import Keyring

# Keys are back-dated so that signatures can be made "in the past" (replay tests).
KEY_CREATED = "20200101T000000"


@dataclass
class TestKeys:
    __test__ = False

    home: Path
    ring: Keyring
    fprs: dict[str, str] = field(default_factory=dict)  # role -> fingerprint
    public: dict[str, Path] = field(default_factory=dict)  # role -> armoured public key file

    def sign(self, data: Path, sig: Path, role: str, when: int | None = None) -> None:
        extra = ["--faked-system-time", f"{when}!"] if when is not None else None
        self.ring.sign_detached(data, sig, self.fprs[role], extra_args=extra)

    def close(self) -> None:
        stop_agent(self.ring)
        shutil.rmtree(self.home, ignore_errors=True)


def generate_key(ring: Keyring, email: str, name: str, **params: object) -> str:
    """A new unprotected ed25519 signing key in ``ring``; its fingerprint."""
    spec = ring.gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=name,
        name_email=email,
        expire_date=0,
        no_protection=True,
        **params,
    )
    result = ring.gpg.gen_key(spec)
    assert result.fingerprint, result.stderr
    return str(result.fingerprint).upper()


def export_public(ring: Keyring, fpr: str) -> str:
    """The armoured public key ``fpr`` of ``ring``."""
    data = str(ring.gpg.export_keys(fpr))
    assert data, f"no key {fpr} in {ring.home}"
    return data


def stop_agent(ring: Keyring) -> None:
    """End the gpg-agent that signing started in ``ring``'s home, if one runs."""
    assert ring.home is not None
    subprocess.run(
        ["gpgconf", "--homedir", str(ring.home), "--kill", "gpg-agent"],
        check=False, capture_output=True, timeout=10,
    )  # fmt: skip


def make_keys(*roles: str) -> TestKeys:
    home = Path(tempfile.mkdtemp(prefix="ctk-gpg-", dir="/tmp"))
    keys = TestKeys(home, Keyring(home / "s", agent=True))
    try:
        for role in roles:
            fpr = generate_key(
                keys.ring, f"{role}@example.org", f"ctkit test {role}", creation_date=KEY_CREATED
            )
            keys.fprs[role] = fpr
            pub = home / f"{role}.asc"
            pub.write_text(export_public(keys.ring, fpr))
            keys.public[role] = pub
    except BaseException:
        keys.close()
        raise
    return keys
