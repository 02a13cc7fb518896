"""Adding and changing restic storages with a real local repository: a change that fails
leaves the secrets as they were (the password file may be the only copy there is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, StorageError
from shared.storage import resticadmin
from shared.storage.config import load_config
from shared.storage.resticplugin import ResticStorage, env_file, password_file

PASSWORD = b"pw\n"  # the restic_store fixture's


def secret(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def offsite(restic_store: ResticStorage) -> Path:
    return Path(restic_store.repo.repository)


def test_a_failed_add_keeps_a_password_file_put_there_by_hand(ctroot: Path, tmp_path: Path) -> None:
    by_hand = password_file("second")
    by_hand.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    by_hand.write_bytes(PASSWORD)
    env = secret(tmp_path, "env", b"RESTIC_COMPRESSION=auto\n")
    with pytest.raises(StorageError):
        resticadmin.add("second", {"repository": str(tmp_path / "none")}, password=None, env=env)
    assert by_hand.read_bytes() == PASSWORD
    assert not env_file("second").exists()  # what this command wrote is gone again
    assert "second" not in load_config()


def test_a_failed_set_puts_the_old_secrets_back(offsite: Path, tmp_path: Path) -> None:
    env = secret(tmp_path, "env", b"RESTIC_COMPRESSION=auto\n")
    resticadmin.change("offsite", {}, env=env)
    assert env_file("offsite").read_bytes() == env.read_bytes()
    wrong = secret(tmp_path, "wrong", b"another password\n")
    bad_env = secret(tmp_path, "bad", b"PATH=/tmp\n")
    with pytest.raises(ConfigError, match="'PATH' may not be set"):
        resticadmin.change("offsite", {}, password=wrong, env=bad_env)
    assert password_file("offsite").read_bytes() == PASSWORD  # nothing written at all
    with pytest.raises(StorageError, match="wrong repository password"):
        resticadmin.change("offsite", {}, password=wrong)
    assert password_file("offsite").read_bytes() == PASSWORD
    assert env_file("offsite").read_bytes() == env.read_bytes()
    with pytest.raises(StorageError):
        resticadmin.change("offsite", {"repository": str(tmp_path / "elsewhere")})
    store = load_config().get("offsite")
    assert store is not None and store.props["repository"] == str(offsite)
    # a right change is stored
    same = secret(tmp_path, "same", PASSWORD)
    resticadmin.change("offsite", {"prune-backups": "keep-last=3"}, password=same)
    store = load_config().get("offsite")
    assert store is not None and store.props["prune-backups"] == "keep-last=3"


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo", "missing", "huge"])
def test_a_secret_source_must_be_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    """A directory given as --password-file or --env-file ended in an IsADirectoryError
    traceback; the others were one line already."""
    import os

    path = tmp_path / "secret"
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to(secret(tmp_path, "real", PASSWORD))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"x" * (resticadmin.MAX_SECRET + 1))
    said = {
        "missing": f"password file '{path}': No such file or directory",
        "huge": f"password file '{path}' is too large",
    }.get(kind, f"password file '{path}' is not a regular file")
    with pytest.raises(ConfigError) as info:
        resticadmin._read_secret_source(path, "password file")
    assert str(info.value) == said
