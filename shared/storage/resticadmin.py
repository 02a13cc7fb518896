"""Adding, changing and removing ``restic`` storages with their secrets, so nobody edits
storage.cfg or ``/etc/pve/priv/storage`` by hand.

The password and the environment file are copied from files the user names (never from argv,
where every local user could read them) into 0600 files; nothing here prints them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .. import atomic, restic
from ..errors import AlreadyExistsError, ConfigError, NotFoundError, ParamError
from ..formats.types import FormatError
from ..regularfile import read_regular
from . import resticnodekey
from .api import check_storage_id
from .config import SECTION_TYPES, load_config, save_config
from .resticplugin import ResticStorage, env_file, password_file, secrets_dir

MAX_SECRET = 64 << 10


def _read_secret_source(path: Path, what: str) -> bytes:
    """A user-given secret file: a regular file (no symlink, no FIFO), of bounded size."""
    try:
        found = read_regular(path, MAX_SECRET, follow_symlinks=False)
    except OSError as err:
        raise ConfigError(f"{what} '{path}': {err.strerror}") from None
    if found is None:  # also a directory, which failed as a traceback
        if not os.path.lexists(path):
            raise ConfigError(f"{what} '{path}': No such file or directory")
        raise ConfigError(f"{what} '{path}' is not a regular file")
    data = found[0]
    if len(data) > MAX_SECRET:
        raise ConfigError(f"{what} '{path}' is too large")
    return data


def _write_secret(path: Path, data: bytes) -> None:
    directory = secrets_dir()
    for level in (directory.parent, directory):  # /etc/pve/priv and its storage/, root only
        if not level.is_dir():
            level.mkdir(parents=True, mode=0o700)
            os.chmod(level, 0o700)
    atomic.write_bytes(path, data, mode=0o600)


def _install_secrets(sid: str, password: Path | None, env: Path | None) -> None:
    """Both sources are read and checked before either file is written."""
    secrets: list[tuple[Path, bytes]] = []
    if password is not None:
        data = _read_secret_source(password, "password file")
        if not data.strip(b"\r\n"):
            raise ConfigError(f"password file '{password}' is empty")
        secrets.append((password_file(sid), data))
    if env is not None:
        data = _read_secret_source(env, "environment file")
        try:
            restic.parse_env_file(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"environment file '{env}' is not UTF-8 text") from None
        secrets.append((env_file(sid), data))
    for path, data in secrets:
        _write_secret(path, data)


def _saved_secrets(sid: str) -> dict[Path, bytes | None]:
    """The secret files as they are now, so that a failed change puts them back: losing the
    only copy of a repository password loses every backup in it."""
    saved: dict[Path, bytes | None] = {}
    for path in (password_file(sid), env_file(sid)):
        try:
            saved[path] = path.read_bytes()
        except FileNotFoundError:
            saved[path] = None
    return saved


def _restore_secrets(saved: dict[Path, bytes | None]) -> None:
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            _write_secret(path, data)


def _props(options: dict[str, str | None]) -> dict[str, Any]:
    """Parse ``repository``, ``content``, ``prune-backups``, ... as storage.cfg would."""
    out: dict[str, Any] = {}
    for key, raw in options.items():
        if raw is None:
            continue
        try:
            out[key] = SECTION_TYPES["restic"].parse_value(key, raw)
        except FormatError as err:  # a bad value given, as vzdump prune and job add say it
            raise ParamError.of_value(key, err) from None
    return out


def add(
    sid: str,
    options: dict[str, str | None],
    *,
    password: Path | None,
    env: Path | None = None,
    init: bool = False,
) -> ResticStorage:
    """A new restic storage; its repository initialised with ``init``, else checked."""
    check_storage_id(sid)
    if password is None and not password_file(sid).is_file():
        raise ConfigError("a restic storage needs --password-file")
    cfg = load_config()
    if sid in cfg:
        raise AlreadyExistsError(f"storage ID '{sid}' already defined")
    given = {k: v for k, v in options.items() if v is not None}
    props = _props({"repository": given.pop("repository", None), "content": "backup", **given})
    if "repository" not in props:
        raise ConfigError("a restic storage needs --repository")
    saved = _saved_secrets(sid)
    try:
        _install_secrets(sid, password, env)
        store = ResticStorage(sid, props)
        store.repo.drop_node_key()  # one a storage of this name left behind
        restic.run(store.repo, ["init"] if init else ["cat", "config"], timeout=300)
        cfg.add("restic", sid, props)
        save_config(cfg)
    except BaseException:
        _restore_secrets(saved)  # a password file put there by hand stays
        raise
    resticnodekey.ensure(store)
    return store


def change(
    sid: str,
    options: dict[str, str | None],
    *,
    password: Path | None = None,
    env: Path | None = None,
    delete: list[str] | None = None,
) -> None:
    cfg = load_config()
    section = cfg.sections.get(sid)
    if section is None or section.type != "restic":
        raise NotFoundError(f"restic storage '{sid}' does not exist")
    before = ResticStorage(sid, dict(section.props))
    section.props.update(_props(options))
    for key in delete or []:
        if key == "repository":
            raise ConfigError("the repository cannot be deleted")
        section.props.pop(key, None)
    saved = _saved_secrets(sid)
    try:
        _install_secrets(sid, password, env)
        store = ResticStorage(sid, section.props)
        access = password is not None or env is not None or options.get("repository") is not None
        if access:
            # refused rather than stored: a wrong password would lock every backup out
            restic.run(store.repo.without_node_key(), ["cat", "config"], timeout=300)
        save_config(cfg)
    except BaseException:
        _restore_secrets(saved)
        raise
    if store.repository != before.repository:  # this node's key goes with the repository
        resticnodekey.retire(before)
        resticnodekey.ensure(store)
    elif access and store.repo.node_key_id() is None:  # new credentials: try again now
        store.repo.drop_node_key()
        resticnodekey.ensure(store)


def _remove_secrets(sid: str) -> None:
    for path in (password_file(sid), env_file(sid)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove(sid: str) -> None:
    """The storage.cfg section and the secrets go; of the repository, only this node's own
    key is taken out (shared.storage.resticnodekey)."""
    cfg = load_config()
    section = cfg.sections.get(sid)
    if section is None or section.type != "restic":
        raise NotFoundError(f"restic storage '{sid}' does not exist")
    cfg.remove(sid)
    save_config(cfg)
    resticnodekey.retire(ResticStorage(sid, section.props))
    _remove_secrets(sid)


def unlock(sid: str) -> None:
    """``restic unlock``: remove stale locks (those of no live restic process)."""
    store = load_config().storage(sid)
    if not isinstance(store, ResticStorage):
        raise ConfigError(f"storage '{sid}' is not a restic storage")
    restic.run(store.repo, ["unlock"], timeout=300)
