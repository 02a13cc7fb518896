"""Throw-away OpenPGP keys for tests: quick unprotected ed25519 keys in a short temp home.

The home lives directly under /tmp because gpg-agent's socket path must stay short; the
agent started for signing is stopped and the home removed by :meth:`TestKeys.close`.
"""

from __future__ import annotations

import shutil
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
        self.ring.stop_agent()
        shutil.rmtree(self.home, ignore_errors=True)


def make_keys(*roles: str) -> TestKeys:
    home = Path(tempfile.mkdtemp(prefix="ctk-gpg-", dir="/tmp"))
    keys = TestKeys(home, Keyring(home / "s", agent=True))
    try:
        for role in roles:
            params = keys.ring.gpg.gen_key_input(
                key_type="EDDSA",
                key_curve="ed25519",
                key_usage="sign",
                name_real=f"ctkit test {role}",
                name_email=f"{role}@example.org",
                expire_date=0,
                creation_date=KEY_CREATED,
                no_protection=True,
            )
            result = keys.ring.gpg.gen_key(params)
            assert result.fingerprint, result.stderr
            fpr = str(result.fingerprint).upper()
            keys.fprs[role] = fpr
            pub = home / f"{role}.asc"
            pub.write_text(keys.ring.export_public(fpr))
            keys.public[role] = pub
    except BaseException:
        keys.close()
        raise
    return keys
