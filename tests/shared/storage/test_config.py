from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, NotFoundError, StorageError
from shared.storage.btrfsplugin import BtrfsStorage
from shared.storage.config import load_config, parse_config, save_config
from shared.storage.dirplugin import DirStorage

from .conftest import WriteCfg

GOLDEN = Path(__file__).parent / "golden"


def test_missing_file_gives_default_local(ctroot: Path) -> None:
    cfg = load_config()
    assert cfg.ids() == ["local"]
    assert cfg.warnings == []
    local = cfg.storage("local")
    assert isinstance(local, DirStorage)
    assert local.configured_path == "/var/lib/vz"
    assert local.path == ctroot / "var/lib/vz"
    assert local.content == {"vztmpl", "backup", "rootdir", "iso"}
    assert not local.disabled and local.prune_backups is None
    assert cfg.render() == ""  # the implicit local is never written


def test_golden_round_trip_is_byte_identical(write_cfg: WriteCfg) -> None:
    text = (GOLDEN / "storage.cfg").read_text()
    path = write_cfg(text)
    cfg = load_config()
    assert cfg.warnings == []
    assert cfg.ids() == ["local", "backups", "bt"]
    save_config(cfg)
    assert path.read_text() == text


def test_golden_values(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg((GOLDEN / "storage.cfg").read_text())
    cfg = load_config()
    backups = cfg.storage("backups")
    assert isinstance(backups, DirStorage) and not isinstance(backups, BtrfsStorage)
    assert backups.content == {"backup"}
    assert backups.prune_backups == {"keep-daily": 7, "keep-last": 3}
    assert backups.max_protected_backups == 2
    assert backups.shared and backups.nodes == ["node1", "node2"]
    assert backups.path == ctroot / "srv/backups"
    bt = cfg.storage("bt")
    assert isinstance(bt, BtrfsStorage)
    assert bt.content == {"rootdir", "images"}
    assert bt.disabled
    assert bt.props["nocow"] is True


def test_add_remove_and_write(ctroot: Path) -> None:
    cfg = load_config()
    cfg.add("dir", "store2", {"path": "/srv/s2", "content": ["iso", "vztmpl"], "disable": True})
    cfg.add("btrfs", "bt", {"path": "/mnt/bt"})
    save_config(cfg)
    text = (ctroot / "etc/pve/storage.cfg").read_text()
    assert text == (
        "dir: store2\n\tpath /srv/s2\n\tcontent iso,vztmpl\n\tdisable 1\n\n"
        "btrfs: bt\n\tpath /mnt/bt\n"
    )
    again = load_config()
    assert again.ids() == ["local", "store2", "bt"]
    assert again.storage("bt").content == {"images", "rootdir"}  # the type's default
    again.remove("store2")
    assert "store2" not in again
    with pytest.raises(ConfigError, match=r"already exists"):
        again.add("dir", "bt", {"path": "/x"})
    with pytest.raises(ConfigError, match=r"missing value for required option 'path'"):
        again.add("dir", "nopath", {})
    with pytest.raises(ConfigError, match=r"cannot be shorter than 2 characters"):
        again.add("dir", "x", {"path": "/x"})


def test_explicit_local_replaces_the_default(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg("dir: local\n\tpath /data/vz\n\tcontent images\n")
    local = load_config().storage("local")
    assert local.path == ctroot / "data/vz"
    assert local.content == {"images"}


def test_unknown_storage(ctroot: Path) -> None:
    cfg = load_config()
    assert cfg.get("nope") is None
    with pytest.raises(NotFoundError, match=r"^storage 'nope' does not exist$"):
        cfg.storage("nope")


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("dir: s1\n\tpath /a\n\tprune-backups keep-all=1,keep-last=2\n", "keep-all cannot be set"),
        ("dir: s1\n\tpath /a\n\tprune-backups keep-foo=1\n", "invalid format - format error"),
        ("dir: s1\n\tpath /a\n\tmax-protected-backups -2\n", "minimum value of -1"),
        ("dir: s1\n\tpath /a\n\tcontent iso,none\n", "unable to combine 'none'"),
        ("dir: s1\n\tpath /a\n\tcontent iso,floppy\n", "does not support content type 'floppy'"),
        ("dir: s1\n\tpath /a\n\tformat qcow3\n", "enumeration"),
        ("dir: s1\n\tpath /a\n\tcontent-dirs iso=../x\n", "invalid override"),
        ("dir: s1\n\tpath /a\n\tbogus 1\n", "property is not defined in schema"),
        ("btrfs: s1\n\tpath /a\n\tformat qcow2\n", "enumeration"),
    ],
)
def test_invalid_values_are_warnings(text: str, warning: str) -> None:
    cfg = parse_config(text)
    assert any(warning in w for w in cfg.warnings), cfg.warnings
    assert "s1" in cfg  # the section itself stays
    assert cfg.lossy == ("floppy" not in text)  # an unknown content type is kept, not dropped


def test_floppy_is_ignored_but_kept_in_the_file() -> None:
    text = "dir: s1\n\tpath /a\n\tcontent iso,floppy\n"
    cfg = parse_config(text)
    assert cfg.storage("s1").content == {"iso"}
    assert cfg.render() == text


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("dir: x\n\tpath /a\n", "cannot be shorter than 2 characters"),
        ("dir: 1abc\n\tpath /a\n", "contains illegal characters"),
        ("dir: s1\n\tcontent iso\n", "missing value for required option 'path'"),
        ("dir: s1\n\tpath a/b\n", "valid absolute path"),
        ("nfs: s1\n\tpath /a\n\tserver 10.0.0.1\n", "unknown type"),
    ],
)
def test_bad_sections_are_dropped_and_block_saving(text: str, warning: str) -> None:
    cfg = parse_config(text + "\ndir: good\n\tpath /g\n")
    assert any(warning in w for w in cfg.warnings), cfg.warnings
    assert cfg.ids() == ["local", "good"]
    with pytest.raises(ConfigError, match=r"refusing to write storage.cfg"):
        save_config(cfg, Path("/nonexistent/never-written"))


@pytest.mark.parametrize("sid", ["local", "s1"])
def test_a_dropped_section_is_an_error_when_used_never_the_built_in_local(sid: str) -> None:
    """An invalid 'local' section became the built-in local (/var/lib/vz) without a word:
    volumes and backups went where the file did not say."""
    cfg = parse_config(f"dir: {sid}\n\tpath relative/path\n\tcontent rootdir,backup\n")
    assert cfg.get(sid) is None and sid not in cfg.ids()
    with pytest.raises(StorageError) as info:
        cfg.storage(sid)
    # the reason is the dropped line's (it said only what its absence broke: 'path' missing)
    assert str(info.value) == (
        f"storage '{sid}' is not usable - storage.cfg section 'dir: {sid}': line 2: dir '{sid}'"
        " - 'path': value does not look like a valid absolute path"
    )
    assert [s.id for s in cfg] == ([] if sid == "local" else ["local"])


def test_maxfiles_maps_to_prune_backups() -> None:
    cfg = parse_config("dir: s1\n\tpath /a\n\tmaxfiles 3\n\ndir: s2\n\tpath /b\n\tmaxfiles 0\n")
    assert cfg.storage("s1").prune_backups == {"keep-last": 3}
    assert cfg.storage("s2").prune_backups == {"keep-all": True}


@pytest.mark.parametrize(
    "line", ["prune-backups keep-last=30,keep-dayly=7", "prune-backups keep-daily=-7", "maxfiles x"]
)
def test_a_retention_that_does_not_parse_is_an_error_never_none(line: str) -> None:
    """Read as "none set", the backup fell back to vzdump.conf's retention and removed what
    the storage's was meant to keep."""
    cfg = parse_config(f"dir: s1\n\tpath /a\n\tcontent backup\n\t{line}\n")
    with pytest.raises(ConfigError, match="unable to read the retention of storage 's1' - '"):
        cfg.storage("s1").prune_backups  # noqa: B018
    assert parse_config("dir: s2\n\tpath /b\n").storage("s2").prune_backups is None
    both = "dir: s3\n\tpath /c\n\tprune-backups keep-last=2\n\tmaxfiles x\n"
    assert parse_config(both).storage("s3").prune_backups == {"keep-last": 2}  # maxfiles unused


def test_paths_are_confined_to_the_root(write_cfg: WriteCfg, ctroot: Path) -> None:
    inside = ctroot / "already/inside"
    write_cfg(f"dir: s1\n\tpath {inside}\n\ndir: s2\n\tpath /srv/x/../y/\n")
    cfg = load_config()
    assert cfg.storage("s1").path == inside
    assert cfg.storage("s2").path == ctroot / "srv/y"
