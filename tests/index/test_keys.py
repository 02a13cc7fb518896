"""pveam's keyring: key add/list/remove; the reference keys match the default pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from index import keys
from index.sources import DEFAULT_SOURCES
from shared import paths
from shared.errors import NotFoundError
from tests.conftest import reference_file
from tests.shared.gpg_keys import TestKeys


@pytest.mark.parametrize(
    ("name", "fingerprint"),
    [
        ("proxmox-release-bookworm.gpg", "F4E136C67CDCE41AE6DE6FC81140AF8F639E0C39"),
        ("proxmox-release-trixie.gpg", "24B30F06ECC1836A4E5EFECBA7BCD1420BFE778E"),
        ("release@turnkeylinux.com.pubkey", "694CFF26795A29BAE07B4EB585C25E95A16EB94D"),
    ],
)
def test_reference_keys_import_with_the_pinned_fingerprints(
    ctroot: Path, name: str, fingerprint: str
) -> None:
    imported = keys.add_key(reference_file(name))
    assert [k.fingerprint for k in imported] == [fingerprint]
    pinned = {f for src in DEFAULT_SOURCES for f in src.fingerprints}
    assert fingerprint in pinned
    assert keys.keyring().home == paths.pveam_gnupghome()
    assert str(paths.pveam_gnupghome()).startswith(str(ctroot))


def test_add_list_remove(empty_keyring: Path, gpg_keys: TestKeys) -> None:
    assert keys.list_keys() == []
    keys.add_key(gpg_keys.public["trusted"])
    keys.add_key(gpg_keys.public["other"])
    assert {k.fingerprint for k in keys.list_keys()} == {
        gpg_keys.fprs["trusted"],
        gpg_keys.fprs["other"],
    }
    keys.remove_key(gpg_keys.fprs["other"])
    assert [k.fingerprint for k in keys.list_keys()] == [gpg_keys.fprs["trusted"]]
    with pytest.raises(NotFoundError):
        keys.remove_key(gpg_keys.fprs["other"])


def test_release_keys_are_shipped_and_trusted_out_of_the_box(ctroot: Path) -> None:
    # the package carries the default sources' keys; a fresh keyring holds them, pinned
    shipped = {p.name for p in keys.release_key_files()}
    assert shipped == {
        "proxmox-release-bookworm.gpg",
        "proxmox-release-trixie.gpg",
        "turnkey-release.asc",
    }
    pinned = {f for src in DEFAULT_SOURCES for f in src.fingerprints}
    assert {k.fingerprint for k in keys.list_keys()} == pinned
    for path in keys.release_key_files():
        reference = reference_file(
            "release@turnkeylinux.com.pubkey" if path.suffix == ".asc" else path.name
        )
        assert path.read_bytes() == reference.read_bytes()
    # a removed shipped key stays removed
    keys.remove_key("694CFF26795A29BAE07B4EB585C25E95A16EB94D")
    assert {k.fingerprint for k in keys.list_keys()} == pinned - {
        "694CFF26795A29BAE07B4EB585C25E95A16EB94D"
    }


def test_missing_key_file_is_not_found(ctroot: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"key file '.*missing.asc' does not exist"):
        keys.add_key(tmp_path / "missing.asc")
