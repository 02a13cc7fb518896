"""pveam's trusted keys: ``key add/list/remove`` on the keyring in ``etc/pveam/gnupg``.

A key in this keyring is only a candidate: a source accepts an index signature solely from a
key whose fingerprint it pins (see :mod:`index.sources`).

The release keys of the default sources (Proxmox bookworm and trixie, TurnKey) ship with the
package (``index/release_keys``) and are imported once, the first time the keyring is used,
so that the default sources verify out of the box. A marker file records that this happened:
a shipped key removed with ``pveam key remove`` stays removed.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

from shared import atomic, paths
from shared.gpg import KeyInfo, Keyring

SEEDED_MARKER = ".release-keys-imported"


def release_key_files() -> list[Path]:
    """The shipped public key files of the default sources."""
    folder = resources.files("index") / "release_keys"
    return sorted(Path(str(f)) for f in folder.iterdir() if f.is_file())


def keyring() -> Keyring:
    """pveam's keyring, holding the shipped release keys unless they were removed."""
    ring = Keyring(paths.pveam_gnupghome())
    marker = paths.pveam_gnupghome() / SEEDED_MARKER
    if not marker.exists():
        for path in release_key_files():
            ring.import_file(path)
        with contextlib.suppress(OSError):  # a read-only keyring is still usable
            atomic.write_text(marker, "the shipped release keys were imported once\n")
    return ring


def add_key(path: Path) -> list[KeyInfo]:
    """Import the public key(s) in ``path`` (armoured or binary); return what was imported."""
    ring = keyring()
    fprs = ring.import_file(path)
    return [k for k in ring.list_keys() if k.fingerprint in fprs]


def list_keys() -> list[KeyInfo]:
    return keyring().list_keys()


def has_key(fingerprint: str) -> bool:
    """Whether pveam's keyring on this host holds the key (without creating the keyring)."""
    if not paths.pveam_gnupghome().is_dir():
        return False
    return keyring().find_key(fingerprint) is not None


def remove_key(fingerprint: str) -> None:
    keyring().remove(fingerprint)
