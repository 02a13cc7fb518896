"""This node's own key of a restic storage, with a real local repository: added with the
storage, used by every restic command, and never a condition: a key that no longer opens the
repository is dropped and the storage's password used, a backend it cannot be written to
keeps the password."""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from shared import locks, paths, restic, restickey
from shared.errors import StorageError
from shared.storage import resticadmin, resticnodekey, sftpput
from shared.storage.config import load_config
from shared.storage.resticplugin import ResticStorage, node_key_file, node_key_record
from tests.shared.http_server import handler_server


def own_keys(store: ResticStorage) -> list[dict[str, object]]:
    """The repository's keys, listed with the storage's own password."""
    out = restic.run(store.repo.without_node_key(), ["key", "list", "--json"])
    keys: list[dict[str, object]] = json.loads(out)
    return keys


def key_path(store: ResticStorage) -> Path:
    key = store.repo.node_key_id()
    assert key is not None
    return Path(store.repo.repository) / "keys" / key


def test_a_local_storage_gets_its_own_key(restic_store: ResticStorage) -> None:
    repo = restic_store.repo
    key = repo.node_key_id()
    assert key is not None
    for path in (node_key_file("offsite"), node_key_record("offsite")):
        assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(str(k["userName"]) for k in own_keys(restic_store)) == ["ctkit", "root"]
    env = repo.environment()
    assert env["RESTIC_PASSWORD_FILE"] == str(node_key_file("offsite"))
    assert env["RESTIC_KEY_HINT"] == key
    out = json.loads(restic.run(repo, ["key", "list", "--json"]))
    assert [k["id"] for k in out if k["current"]] == [key[:8]]  # restic opened it with this key
    # the check of a new password never uses it
    assert "RESTIC_KEY_HINT" not in repo.without_node_key().environment()


def test_a_key_gone_from_the_repository_is_dropped_and_made_again(
    restic_store: ResticStorage,
) -> None:
    key_path(restic_store).unlink()  # `restic key remove`, or the repository replaced
    assert restic.run_json(restic_store.repo, ["snapshots"]) == []  # the password took over
    assert restic_store.repo.node_key_id() is None
    assert not node_key_file("offsite").exists()
    assert resticnodekey.ensure(restic_store)
    assert key_path(restic_store).is_file()
    # a streamed command cannot run again on its own: it says so in one line
    key_path(restic_store).unlink()
    proc = restic.start(restic_store.repo, ["cat", "config"])
    with pytest.raises(StorageError, match="this node's key no longer opens the repository"):
        proc.finish()
    assert restic_store.repo.node_key_id() is None
    restic.run(restic_store.repo, ["cat", "config"])


def test_the_key_follows_a_change_of_repository_and_goes_with_the_storage(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    old = key_path(restic_store)
    same = tmp_path / "same.pw"
    same.write_text("pw\n")
    resticadmin.change("offsite", {}, password=same)  # a new password file: the key stays
    assert key_path(restic_store) == old and old.is_file()
    elsewhere = tmp_path / "elsewhere"
    restic.run(restic.Repo("x", str(elsewhere), tmp_path / "restic.pw", tmp_path / "none"),
               ["init"])  # fmt: skip
    resticadmin.change("offsite", {"repository": str(elsewhere)})
    assert not old.exists()  # taken out of the old repository
    store = load_config().storage("offsite")
    assert isinstance(store, ResticStorage)
    new = key_path(store)
    assert new.parent == elsewhere / "keys" and new.is_file()
    resticadmin.remove("offsite")
    assert not new.exists()
    assert not node_key_file("offsite").exists() and not node_key_record("offsite").exists()
    assert len(os.listdir(elsewhere / "keys")) == 1  # the password's key, untouched


def test_no_key_is_added_to_a_repository_with_many(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """restic looks for the key a password opens among the first 20 only."""
    restic_store.repo.drop_node_key()
    keys = Path(restic_store.repo.repository) / "keys"
    (own,) = [str(k["id"]) for k in own_keys(restic_store) if k["current"]]
    for name in os.listdir(keys):
        if not name.startswith(own):
            (keys / name).unlink()  # the node key made when the storage was added
    master = restickey.parse_master(
        restic.run(restic_store.repo.without_node_key(), ["cat", "masterkey"])
    )
    for _ in range(resticnodekey.MAX_KEYS - 1):  # other hosts' keys
        data = restickey.key_file(master, restickey.new_secret(), hostname="other")
        (keys / restickey.key_id(data)).write_bytes(data)
    before = sorted(os.listdir(keys))
    assert len(before) == resticnodekey.MAX_KEYS
    assert not resticnodekey.ensure(restic_store)
    assert sorted(os.listdir(keys)) == before
    assert restic_store.repo.node_key_id() is None and not node_key_file("offsite").exists()
    other = next(name for name in before if not name.startswith(own))
    (keys / other).unlink()  # one fewer (never the password's own key): this node's fits...
    assert not resticnodekey.ensure(restic_store)  # ...once a day has passed, or
    new_pw = tmp_path / "again.pw"
    new_pw.write_text("pw\n")
    resticadmin.change("offsite", {}, password=new_pw)  # the storage's credentials are set
    assert restic_store.repo.node_key_id() is not None
    assert len(os.listdir(keys)) == resticnodekey.MAX_KEYS


def test_a_key_lock_held_elsewhere_leaves_the_password_in_use(
    restic_store: ResticStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another command still adding the key (or hung at it) makes a backup job go on with the
    password, never fail: the key is a speed-up."""
    restic_store.repo.drop_node_key()
    monkeypatch.setattr(resticnodekey, "KEY_LOCK_WAIT", 0.3)
    with locks.flock(paths.under("run/lock/ctkit-restic-key-offsite.lock"), 1):
        assert not resticnodekey.ensure(restic_store)
    assert restic_store.repo.node_key_id() is None
    assert resticnodekey.ensure(restic_store)  # once it is free


@pytest.mark.parametrize(
    "repository", ["s3:https://s3.example/bucket", "relative/path", "rclone:x:y", "sftp:host"]
)
def test_backends_it_cannot_write_keep_the_password(repository: str, tmp_path: Path) -> None:
    repo = restic.Repo("x", repository, tmp_path / "pw", tmp_path / "env")
    assert not resticnodekey.supported(repo)


@pytest.mark.parametrize(
    ("repository", "command", "argv", "directory"),
    [
        ("sftp:bk@host:/srv/repo", None, ["ssh", "host", "-l", "bk", "-s", "sftp"], "/srv/repo"),
        ("sftp:host:repo/", None, ["ssh", "host", "-s", "sftp"], "repo"),
        ("sftp:a@b@host:/r", None, ["ssh", "host", "-l", "a@b", "-s", "sftp"], "/r"),
        ("sftp://bk@host:2222//srv/r", None,
         ["ssh", "host", "-p", "2222", "-l", "bk", "-s", "sftp"], "/srv/r"),
        ("sftp://host/rel/../r", None, ["ssh", "host", "-s", "sftp"], "r"),
        ("sftp:h:/r", "ssh -p 22 -i '/k y' h -s sftp",
         ["ssh", "-p", "22", "-i", "/k y", "h", "-s", "sftp"], "/r"),
    ],
)  # fmt: skip
def test_an_sftp_repository_is_reached_as_restic_reaches_it(
    repository: str, command: str | None, argv: list[str], directory: str
) -> None:
    assert sftpput.target(repository, command) == sftpput.Target(argv, directory)


@pytest.mark.parametrize(
    "repository",
    ["sftp:host", "sftp:host:~/r", "sftp://host", "/srv/r", "sftp://h:abc//r",
     "sftp:-oProxyCommand=touch /tmp/x:/r", "sftp:u@-oProxyCommand=x:/r", "sftp://-oX=y/r"],
)  # fmt: skip
def test_what_restic_would_not_take_is_no_sftp_target(repository: str) -> None:
    assert sftpput.target(repository, None) is None
    assert sftpput.target("sftp:h:/r", "ssh 'unbalanced") is None


def test_nothing_is_kept_when_the_key_cannot_be_written(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    restic_store.repo.drop_node_key()
    keys = Path(restic_store.repo.repository) / "keys"
    before = sorted(os.listdir(keys))
    moved = tmp_path / "keys.real"
    keys.rename(moved)
    keys.symlink_to(moved)  # a keys/ that is not a plain directory is not written to
    try:
        assert not resticnodekey.ensure(restic_store)
    finally:
        keys.unlink()
        moved.rename(keys)
    assert restic_store.repo.node_key_id() is None and not node_key_file("offsite").exists()
    assert sorted(os.listdir(keys)) == before
    assert not [p for p in keys.parent.iterdir() if p.name.startswith(".ctkit-key")]
    # the failure is remembered: the next backups do not pay for another try for a day
    record = json.loads(node_key_record("offsite").read_text())
    assert record["key"] is None and time.time() - record["tried"] < 60
    assert not resticnodekey.ensure(restic_store)
    # a temporary file a killed command left is removed by the next, once it is old
    stale, fresh = keys.parent / ".ctkit-key.0a0b0c.tmp", keys.parent / ".ctkit-key.0d0e0f.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    record["tried"] -= resticnodekey.RETRY_AFTER
    node_key_record("offsite").write_text(json.dumps(record))  # a day later
    assert resticnodekey.ensure(restic_store)
    assert not stale.exists() and fresh.exists()


class _Recorder(BaseHTTPRequestHandler):
    """A REST server that redirects every upload elsewhere and records what reaches it."""

    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("POST", self.path, body))
        self.send_response(307)
        self.send_header("Location", "/elsewhere" + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_rest_upload_follows_no_redirect_and_no_proxy_of_the_caller(
    tmp_path: Path, ctroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Under a root of its own: restic's environment makes its cache directory below it.)"""
    with handler_server(_Recorder) as hostport:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the caller's: not restic's
        (tmp_path / "pw").write_text("pw\n")
        repo = restic.Repo("r", f"rest:http://{hostport}/", tmp_path / "pw", tmp_path / "e")
        assert not resticnodekey.save(repo, "ab" * 32, b"key file")
        assert _Recorder.seen == [("POST", "/keys/" + "ab" * 32, b"key file")]


def test_a_command_that_is_no_sftp_server_is_not_left_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pid_file}; printf garbage; exec sleep 30"]
    with pytest.raises(sftpput.SftpError):
        sftpput.Session(argv, {"PATH": os.environ["PATH"]}, timeout=10)
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()
