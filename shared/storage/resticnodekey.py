"""Giving this node its own key of a restic storage's repository (shared.restickey), and taking
it back.

The key file is written into the repository's ``keys/`` by ctkit itself, since restic adds
keys only with its own (slow) scrypt parameters: directly for a local repository, by a POST
for a REST server (the REST protocol's own way to save a file), over SFTP by the command
restic uses for an sftp repository. Other backends (s3, ...) keep using the storage's
password, as does any repository where something here fails: the key is a speed-up, never a
condition. restic itself proves the new key before it is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from pathlib import Path

from .. import atomic, locks, paths, restic, restickey
from ..errors import CtkitError, LockError
from . import sftpput
from .resticplugin import ResticStorage

KEY_LOCK_WAIT = 120.0
REST_TIMEOUT = 60.0
RETIRE_TIMEOUT = 15.0  # a storage being removed does not wait long for its server
STALE_TMP = 3600.0
RETRY_AFTER = 86400.0  # seconds after a failed try before the next
MAX_KEYS = 12  # keys in a repository (with this node's) beyond which none is added


def local_dir(repository: str) -> Path | None:
    """The directory of a local repository (``/path`` or ``local:/path``)."""
    path = repository.removeprefix("local:")
    return Path(path) if path.startswith("/") else None


def rest_url(repository: str, env: dict[str, str]) -> str | None:
    """The base URL of a REST repository, with the credentials of the env file put in."""
    url = restic.with_rest_credentials(repository, env)
    if not url.startswith(("rest:http://", "rest:https://")):
        return None
    url = url.removeprefix("rest:")
    return url if url.endswith("/") else url + "/"


def _clear_stale(directory: Path) -> None:
    """Temporary key files that a killed command left (an hour old: none is being written)."""
    for tmp in directory.glob(".ctkit-key.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.lstat().st_mtime > STALE_TMP:
                tmp.unlink()


def _save_local(directory: Path, name: str, data: bytes) -> bool:
    keys = directory / "keys"
    if not keys.is_dir() or keys.is_symlink():
        return False
    _clear_stale(directory)
    # written whole beside the directory and linked in: restic stops at a key file it
    # cannot parse, so a half-written one would lock every user out
    tmp = directory / f".ctkit-key.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        atomic.commit_file(tmp, keys / name, overwrite=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return True


def _rest(
    method: str, url: str, env: dict[str, str], data: bytes | None = None,
    timeout: float = REST_TIMEOUT,
) -> bool:  # fmt: skip
    """One request, as restic would make it: only the proxies of restic's own environment
    (not the caller's), and no redirect followed (it would carry the key file elsewhere)."""
    from shared.httpclient import Client, TransportError

    proxies = {s: env[v] for s, v in (("http", "HTTP_PROXY"), ("https", "HTTPS_PROXY")) if v in env}
    try:
        with Client(proxies=proxies).request(
            method, url, body=data, timeout=(timeout, timeout), follow_redirects=False
        ) as reply:
            return reply.status // 100 == 2
    except TransportError:
        return False


def _sftp(
    repo: restic.Repo, env: dict[str, str], name: str, data: bytes | None,
    timeout: float = REST_TIMEOUT,
) -> bool:  # fmt: skip
    where = sftpput.target(repo.repository, repo.sftp_command)
    if where is None:
        return False
    try:
        session = sftpput.Session(where.argv, env, timeout)
        try:
            path = f"{where.directory}/keys/{name}"
            if data is None:
                session.remove(path)
            else:
                session.put(path, data)
        finally:
            session.close()
    except (sftpput.SftpError, OSError, struct.error):
        return False
    return True


def save(repo: restic.Repo, name: str, data: bytes) -> bool:
    """Put key file ``name`` into the repository; False where this backend is not written."""
    directory = local_dir(repo.repository)
    if directory is not None:
        return _save_local(directory, name, data)
    env = repo.environment()
    url = rest_url(repo.repository, env)
    if url is not None:
        return _rest("POST", f"{url}keys/{name}", env, data)
    return _sftp(repo, env, name, data)


def remove_file(repo: restic.Repo, name: str, timeout: float = REST_TIMEOUT) -> None:
    """Take key file ``name`` out of the repository, as far as possible."""
    directory = local_dir(repo.repository)
    if directory is not None:
        with contextlib.suppress(OSError):
            (directory / "keys" / name).unlink()
        return
    env = repo.environment()
    url = rest_url(repo.repository, env)
    if url is not None:
        _rest("DELETE", f"{url}keys/{name}", env, timeout=timeout)
        return
    _sftp(repo, env, name, None, timeout)


def supported(repo: restic.Repo) -> bool:
    return (
        local_dir(repo.repository) is not None
        or repo.repository.startswith(("rest:http://", "rest:https://"))
        or sftpput.target(repo.repository, repo.sftp_command) is not None
    )


def ensure(store: ResticStorage) -> bool:
    """This node's key of the storage's repository, added when it has none yet (one node at a
    time); whether restic now opens the repository with it. After a failed try (a backend
    that refuses the file, a repository with many keys), the next comes a day later."""
    repo = store.repo
    if repo.node_key_id() is not None:
        return True
    if not supported(repo) or _tried_lately(repo):
        return False
    try:
        with locks.flock(paths.under(f"run/lock/ctkit-restic-key-{store.id}.lock"), KEY_LOCK_WAIT):
            return _ensure_locked(repo)
    except LockError:  # another command is still at it: this one goes on with the password
        return False


def _ensure_locked(repo: restic.Repo) -> bool:
    if repo.node_key_id() is not None:  # another command added it meanwhile
        return True
    if _tried_lately(repo):
        return False
    try:
        if _add(repo):
            return True
    except (CtkitError, OSError):
        pass
    repo.drop_node_key()
    assert repo.node_key_record is not None
    with contextlib.suppress(OSError):
        atomic.write_bytes(
            repo.node_key_record, restickey.attempt(repo.repository, time.time()), mode=0o600
        )
    return False


def _tried_lately(repo: restic.Repo) -> bool:
    if repo.node_key_record is None:
        return True
    tried = restickey.read_attempt(repo.node_key_record, repo.repository)
    return tried is not None and abs(time.time() - tried) < RETRY_AFTER


def _add(repo: restic.Repo) -> bool:
    own = repo.without_node_key()
    master = restickey.parse_master(restic.run(own, ["cat", "masterkey"], timeout=300))
    secret = restickey.new_secret()
    data = restickey.key_file(master, secret, hostname=paths.node_name())
    name = restickey.key_id(data)
    if not save(own, name, data):
        return False
    assert repo.node_key is not None and repo.node_key_record is not None
    atomic.write_bytes(repo.node_key, secret.encode("ascii"), mode=0o600)
    atomic.write_bytes(repo.node_key_record, restickey.record(name, repo.repository), mode=0o600)
    try:  # opened with the new key (or run() dropped it and used the password)
        keys = json.loads(restic.run(repo, ["key", "list", "--json"], timeout=300))
    except (CtkitError, ValueError):
        keys = None
    if repo.node_key_id() is None or not isinstance(keys, list) or len(keys) > MAX_KEYS:
        # restic stops looking for the key a password opens after 20: a repository with many
        # keys (hosts, users) keeps every one of them findable without a key hint
        repo.drop_node_key()
        remove_file(own, name)
        return False
    return True


def retire(store: ResticStorage) -> None:
    """Take this node's key out of the repository and forget it (the storage is removed, or
    its repository changed), as far as the repository can be reached: where it cannot, the key
    stays there, useless without its password, which is gone."""
    repo = store.repo
    key = repo.node_key_id()
    if key is not None:
        remove_file(repo.without_node_key(), key, timeout=RETIRE_TIMEOUT)
    repo.drop_node_key()
