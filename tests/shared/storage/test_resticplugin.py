"""Storage type ``restic`` in storage.cfg: parsing beside Proxmox's types, round trip, volume
names, secrets paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage.config import parse_config
from shared.storage.resticbackups import decode_notes, encode_notes, parse_volname
from shared.storage.resticplugin import ResticStorage

CFG = """dir: local
\tpath /var/lib/vz
\tcontent vztmpl,backup,rootdir

restic: offsite
\trepository s3:https://s3.example.org/bucket/ct
\tcontent backup
\tprune-backups keep-daily=7,keep-weekly=4
\tmax-protected-backups 2
"""


def test_parses_and_round_trips(ctroot: Path) -> None:
    cfg = parse_config(CFG)
    assert not cfg.warnings and not cfg.lossy
    store = cfg.storage("offsite")
    assert isinstance(store, ResticStorage)
    assert store.content == frozenset({"backup"}) and store.max_protected_backups == 2
    assert store.prune_backups == {"keep-daily": 7, "keep-weekly": 4}
    repo = store.repo
    assert repo.repository == "s3:https://s3.example.org/bucket/ct"
    assert repo.password_file == ctroot / "etc/pve/priv/storage/offsite.pw"
    assert cfg.render() == CFG
    with pytest.raises(StorageError):
        _ = store.path


def test_beside_proxmox_types_and_bad_values() -> None:
    cfg = parse_config(CFG + "\npbs: backup\n\tserver 10.0.0.1\n\tdatastore x\n\tusername u@pbs\n")
    assert "offsite" in cfg and cfg.lossy  # the pbs section is skipped, nothing else
    bad = parse_config("restic: r1\n\tpath /x\n\n")
    assert "r1" not in bad and bad.warnings
    bad = parse_config("restic: r2\n\trepository --option=x\n\n")
    assert "r2" not in bad


def test_volume_names_and_notes() -> None:
    vol = parse_volname("backup/ct/101/2026-12-02T00:05:12Z")
    assert (vol.vtype, vol.vmid, vol.name) == ("backup", 101, "ct/101/2026-12-02T00:05:12Z")
    for bad in (
        "backup/ct/101/2026-12-02",
        "backup/ct/0/2026-12-02T00:05:12Z",
        "backup/vzdump-lxc-101-2026_12_02-00_05_12.tar.zst",
        "backup/ct/101/../x",
    ):
        with pytest.raises(StorageError):
            parse_volname(bad)
    text = "web, before upgrade\nsecond line ü"
    assert "," not in encode_notes(text) and decode_notes(encode_notes(text)) == text
