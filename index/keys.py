"""pveam's trusted keys: ``key add/list/remove`` on the keyring in ``etc/pveam/gnupg``.

A key in this keyring is only a candidate: a source accepts an index signature solely from a
key whose fingerprint it pins (see :mod:`index.sources`).
"""

from __future__ import annotations

from pathlib import Path

from shared import paths
from shared.gpg import KeyInfo, Keyring


def keyring() -> Keyring:
    return Keyring(paths.pveam_gnupghome())


def add_key(path: Path) -> list[KeyInfo]:
    """Import the public key(s) in ``path`` (armoured or binary); return what was imported."""
    ring = keyring()
    fprs = ring.import_file(path)
    return [k for k in ring.list_keys() if k.fingerprint in fprs]


def list_keys() -> list[KeyInfo]:
    return keyring().list_keys()


def remove_key(fingerprint: str) -> None:
    keyring().remove(fingerprint)
