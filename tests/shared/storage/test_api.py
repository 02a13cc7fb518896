from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import CtkitError, NotFoundError, ParamError, StorageError
from shared.storage import api

from .conftest import WriteCfg

B = "vzdump-lxc-100-2024_01_01-02_00_00"


@pytest.fixture
def cache(ctroot: Path) -> Path:
    directory = ctroot / "var/lib/vz/template/cache"
    directory.mkdir(parents=True)
    return directory


# --- storage lookups ------------------------------------------------------------------------


def test_get_storage_checks_in_order(write_cfg: WriteCfg) -> None:
    write_cfg(
        "dir: off\n\tpath /srv/off\n\tdisable\n\n"
        "dir: elsewhere\n\tpath /srv/e\n\tnodes othernode1\n"
    )
    with pytest.raises(ParamError) as exc:
        api.get_storage("x")
    assert exc.value.errors == {
        "storage": "invalid format - storage ID 'x' cannot be shorter than 2 characters"
    }
    with pytest.raises(ParamError) as exc:
        api.get_storage("bad/id")
    assert "contains illegal characters" in exc.value.errors["storage"]
    with pytest.raises(NotFoundError, match=r"^storage 'x1' does not exist$"):
        api.get_storage("x1")
    with pytest.raises(StorageError, match=r"^storage 'off' is disabled$"):
        api.get_storage("off")
    assert api.get_storage("off", enabled=False).disabled
    with pytest.raises(StorageError, match=r"^storage 'elsewhere' is not available on node '"):
        api.get_storage("elsewhere")


def test_list_templates_checks(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent iso\n\ndir: off\n\tpath /o\n\tdisable 1\n")
    with pytest.raises(NotFoundError, match=r"^storage 'x1' does not exist$"):
        api.list_templates("x1")
    with pytest.raises(StorageError, match=r"^storage 'off' is disabled$"):
        api.list_templates("off")
    with pytest.raises(StorageError, match=r"^Storage does not support templates!$"):
        api.list_templates("local")
    with pytest.raises(StorageError, match=r"^storage 'local' does not support templates$"):
        api.template_dir("local")


def test_template_dir_is_created(ctroot: Path) -> None:
    assert api.template_dir("local") == ctroot / "var/lib/vz/template/cache"
    assert (ctroot / "var/lib/vz/template/cache").is_dir()


# --- pveam remove (§6, cases 35 and 36) -----------------------------------------------------


def test_case_35_remove_then_again(cache: Path) -> None:
    (cache / "a.tar.zst").write_bytes(b"x")
    (cache / "b.tar.zst").write_bytes(b"y")
    api.remove_template("local:vztmpl/a.tar.zst")
    assert sorted(p.name for p in cache.iterdir()) == ["b.tar.zst"]
    with pytest.raises(NotFoundError, match=r"^can't find file 'local:vztmpl/a.tar.zst'$"):
        api.remove_template("local:vztmpl/a.tar.zst")


@pytest.mark.parametrize(
    ("volid", "error", "message"),
    [
        (
            "local:iso/x.iso",
            StorageError,
            "unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'",
        ),
        (
            "local:vztmpl/x.zip",
            StorageError,
            "unable to parse directory volume name 'vztmpl/x.zip'",
        ),
        (
            "local:vztmpl/../../../x.tar.gz",
            StorageError,
            "unable to parse directory volume name 'vztmpl/../../../x.tar.gz'",
        ),
        ("nope:vztmpl/a.tar.gz", NotFoundError, "storage 'nope' does not exist"),
        ("local:vztmpl/dir.tar.gz", NotFoundError, "can't find file 'local:vztmpl/dir.tar.gz'"),
        ("local:backup/" + B + ".tar", StorageError, "content type needs to be 'vztmpl'"),
    ],
)
def test_case_36_remove_errors(
    cache: Path, volid: str, error: type[Exception], message: str
) -> None:
    (cache / "dir.tar.gz").mkdir()
    with pytest.raises(error) as exc:
        api.remove_template(volid)
    assert message in str(exc.value)
    assert (cache / "dir.tar.gz").is_dir()


def test_case_36_paths_are_never_deleted(tmp_path: Path, ctroot: Path) -> None:
    victim = tmp_path / "hostname"
    victim.write_text("keep me\n")
    for arg in [str(victim), "/etc/hostname", "../hostname"]:
        with pytest.raises(StorageError, match=r"unable to parse volume ID") as exc:
            api.remove_template(arg)
        assert exc.value.hint is not None
    assert victim.read_text() == "keep me\n"


def test_remove_on_disabled_storage(write_cfg: WriteCfg, cache: Path) -> None:
    write_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent vztmpl\n\tdisable 1\n")
    (cache / "a.tar.gz").write_bytes(b"x")
    with pytest.raises(StorageError, match=r"^storage 'local' is disabled$"):
        api.remove_template("local:vztmpl/a.tar.gz")
    # the content type of the name is checked before the storage state
    with pytest.raises(StorageError, match=r"content type needs to be 'vztmpl'"):
        api.remove_template("local:iso/a.iso")
    assert (cache / "a.tar.gz").exists()


def test_resolve_template(cache: Path, tmp_path: Path) -> None:
    (cache / "t.tar.xz").write_bytes(b"x")
    assert api.resolve_template("local:vztmpl/t.tar.xz") == cache / "t.tar.xz"
    assert api.resolve_template(str(cache / "t.tar.xz")) == cache / "t.tar.xz"
    with pytest.raises(NotFoundError, match=r"can't find file 'local:vztmpl/u.tar.xz'"):
        api.resolve_template("local:vztmpl/u.tar.xz")
    with pytest.raises(NotFoundError):
        api.resolve_template(str(tmp_path / "none.tar"))
    with pytest.raises(NotFoundError):  # longer than a path may be: is_file() raised
        api.resolve_template("x" * 5000)
    with pytest.raises(StorageError, match=r"content type needs to be 'vztmpl'"):
        api.resolve_template("local:snippets/t.tar.xz")


# --- backups --------------------------------------------------------------------------------


@pytest.fixture
def dump(ctroot: Path) -> Path:
    return api.backup_dir("local")


def test_backup_dir_checks(write_cfg: WriteCfg, ctroot: Path) -> None:
    write_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent backup\n\ndir: tp\n\tpath /t\n\tcontent iso\n"
    )
    assert api.backup_dir("local") == ctroot / "var/lib/vz/dump"
    assert (ctroot / "var/lib/vz/dump").is_dir()
    with pytest.raises(
        StorageError, match=r"^can't use storage 'tp' for backups - wrong content type$"
    ):
        api.backup_dir("tp")


def test_remove_backup_with_log_and_notes(dump: Path) -> None:
    for name in [f"{B}.tar.zst", f"{B}.log", f"{B}.tar.zst.notes", f"{B}.tar", "other.log"]:
        (dump / name).write_text("x")
    api.remove_backup(f"local:backup/{B}.tar.zst")
    assert sorted(p.name for p in dump.iterdir()) == ["other.log", f"{B}.tar"]
    with pytest.raises(NotFoundError, match=rf"^can't find file 'local:backup/{B}.tar.zst'$"):
        api.remove_backup(f"local:backup/{B}.tar.zst")
    with pytest.raises(StorageError, match=r"content type needs to be 'backup'"):
        api.remove_backup("local:vztmpl/a.tar.gz")


def test_remove_backup_gone_ok_takes_only_a_missing_name_as_done(dump: Path) -> None:
    volid = f"local:backup/{B}.tar.zst"
    api.remove_backup(volid, gone_ok=True)  # another prune removed it first
    os.mkfifo(dump / f"{B}.tar.zst")  # something there that is no backup is still refused
    with pytest.raises(NotFoundError, match=rf"^can't find file '{volid}'$"):
        api.remove_backup(volid, gone_ok=True)


def test_remove_renamed_backup_keeps_unrelated_logs(dump: Path) -> None:
    name = "vzdump-lxc-100-renamed.tar"
    for n in [name, f"{name}.notes", "vzdump-lxc-100-renamed.log"]:
        (dump / n).write_text("x")
    api.remove_backup(f"local:backup/{name}")
    # a name that is not a standard vzdump name has neither a log nor a notes file name
    assert sorted(p.name for p in dump.iterdir()) == [
        "vzdump-lxc-100-renamed.log",
        f"{name}.notes",
    ]


def test_protected_backup_is_refused(dump: Path) -> None:
    archive = dump / f"{B}.tar"
    for n in [archive.name, f"{B}.log", f"{archive.name}.notes", f"{archive.name}.protected"]:
        (dump / n).write_text("x")
    with pytest.raises(StorageError) as exc:
        api.remove_backup(f"local:backup/{B}.tar")
    assert str(exc.value) == f"cannot remove protected archive '{archive}'"
    assert len(list(dump.iterdir())) == 4
    with pytest.raises(StorageError, match=r"cannot remove protected archive"):
        api.archive_remove(archive)


def test_a_companion_that_cannot_be_removed_is_a_warning(dump: Path) -> None:
    """The archive is gone all the same: Proxmox warns, the removal does not fail."""
    (dump / f"{B}.tar").write_text("x")
    (dump / f"{B}.log").write_text("x")
    (dump / f"{B}.tar.notes").mkdir()
    assert api.remove_backup(f"local:backup/{B}.tar") == [
        f"Removing notes file '{dump / B}.tar.notes' failed: Is a directory"
    ]
    assert [p.name for p in dump.iterdir()] == [f"{B}.tar.notes"]


def test_a_dangling_protected_link_protects(dump: Path, ctroot: Path) -> None:
    archive = dump / f"{B}.tar"
    archive.write_text("x")
    Path(f"{archive}.protected").symlink_to(ctroot / "nonexistent")
    api.set_backup_protected(f"local:backup/{B}.tar", True)  # already: not created through it
    assert not (ctroot / "nonexistent").exists()
    with pytest.raises(StorageError, match=r"cannot remove protected archive"):
        api.remove_backup(f"local:backup/{B}.tar")


def test_a_protection_marker_is_never_made_through_a_link_planted_meanwhile(
    dump: Path, ctroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link planted at <archive>.protected between the check and the marker's creation (by
    a container that reaches the dump directory) was followed: touch made its target, as
    root, anywhere on the host."""
    from shared.storage import listing

    archive = dump / f"{B}.tar"
    archive.write_text("x")
    victim = ctroot / "host-file"
    checked = listing.is_protected

    def then_planted(path: Path) -> bool:
        answer = checked(path)
        Path(f"{path}.protected").symlink_to(victim)
        return answer

    monkeypatch.setattr(listing, "is_protected", then_planted)
    with pytest.raises(CtkitError, match="it is a symbolic link"):
        api.set_backup_protected(f"local:backup/{B}.tar", True)
    assert not victim.exists()


def test_archive_remove_tolerates_missing_files(dump: Path) -> None:
    (dump / f"{B}.log").write_text("x")
    api.archive_remove(dump / f"{B}.tar.gz")  # archive already gone: the log still goes
    assert list(dump.iterdir()) == []


def test_notes_and_protection(dump: Path, write_cfg: WriteCfg) -> None:
    write_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent backup\n\tmax-protected-backups 1\n")
    names = [
        f"{B}.tar",
        "vzdump-lxc-100-2024_01_02-02_00_00.tar",
        "vzdump-qemu-100-2024_01_02-02_00_00.vma",
    ]
    for n in names:
        (dump / n).write_text("x")
    volids = [f"local:backup/{n}" for n in names]
    api.set_backup_notes(volids[0], "hello\nworld")
    assert (dump / f"{names[0]}.notes").read_text() == "hello\nworld"
    api.set_backup_notes(volids[0], "")
    assert not (dump / f"{names[0]}.notes").exists()
    api.set_backup_protected(volids[0], True)
    api.set_backup_protected(volids[0], True)  # already protected: no limit check
    assert (dump / f"{names[0]}.protected").exists()
    with pytest.raises(
        StorageError,
        match=r"^The number of protected backups per guest is limited to 1 on storage 'local'$",
    ):
        api.set_backup_protected(volids[1], True)
    api.set_backup_protected(volids[2], True)  # another guest type: its own count
    api.set_backup_protected(volids[0], False)
    api.set_backup_protected(volids[1], True)
    assert sorted(p.name for p in dump.glob("*.protected")) == sorted(
        f"{n}.protected" for n in names[1:]
    )
    with pytest.raises(NotFoundError):
        api.set_backup_protected("local:backup/" + B + ".tar.zst", True)


def test_volume_path_and_owner(ctroot: Path) -> None:
    assert api.volume_path("local:vztmpl/a.tar.gz") == ctroot / "var/lib/vz/template/cache/a.tar.gz"
    assert api.volume_path("local:100/vm-100-disk-0.raw") == (
        ctroot / "var/lib/vz/images/100/vm-100-disk-0.raw"
    )
    assert api.volume_owner("local:100/vm-100-disk-0.raw") == 100
    assert api.volume_owner(f"local:backup/{B}.tar") == 100
    assert api.volume_owner("local:vztmpl/a.tar.gz") is None
    with pytest.raises(StorageError, match=r"snapshot feature is not available"):
        api.volume_path("local:100/vm-100-disk-0.raw", snapshot="s1")
