"""Container configs on disk: load by vmid, save atomically, list, and the lock/protection checks.

No flock here: callers wrap read-modify-write cycles in ``shared.locks.config_lock(vmid)``.
"""

from __future__ import annotations

import os
import re

from shared import atomic, paths
from shared.errors import ConfigError, LockError, NotFoundError, StateError
from shared.locks import check_lock_value
from shared.regularfile import read_regular

from .config import Config, parse_config

CONF_RE = re.compile(r"([1-9][0-9]{2,8})\.conf")
CONF_MODE = 0o640
MAX_CONF = 1 << 20  # far above any real config, however many snapshots it holds


def cfs_path(vmid: int) -> str:
    """The path Proxmox names in messages: ``nodes/<node>/lxc/<vmid>.conf``."""
    return f"nodes/{paths.node_name()}/lxc/{vmid}.conf"


def exists(vmid: int) -> bool:
    """Whether the id is taken: any entry of that name, also one that is no regular file (a
    create must not rename its config over it)."""
    return os.path.lexists(paths.ct_conf(vmid))


def read_bytes(vmid: int) -> bytes:
    """The config's bytes: only a regular file (a FIFO would block every command, a symlink to
    /dev/zero or a huge file would take the host's memory), and at most MAX_CONF of it."""
    path = paths.ct_conf(vmid)
    found = read_regular(path, MAX_CONF, follow_symlinks=False)
    if found is None:
        if not os.path.lexists(path):
            raise NotFoundError(f"Configuration file '{cfs_path(vmid)}' does not exist")
        raise ConfigError(f"Configuration file '{cfs_path(vmid)}' is not a regular file")
    data, _st = found
    if len(data) > MAX_CONF:
        raise ConfigError(
            f"Configuration file '{cfs_path(vmid)}' is too large (more than {MAX_CONF} bytes)"
        )
    return data


def check_size(data: bytes) -> None:
    """Refuse a config larger than any command would read back: written, it would leave a
    container that no command can start, change or destroy."""
    if len(data) > MAX_CONF:
        raise ConfigError(
            f"configuration too large ({len(data)} bytes, more than {MAX_CONF} bytes)"
        )


def load(vmid: int, *, strict: bool = False) -> Config:
    """Read and parse ``<vmid>.conf``; NotFoundError when it does not exist."""
    return parse_config(read_bytes(vmid), vmid, strict=strict)


def load_or_none(vmid: int) -> Config | None:
    try:
        return load(vmid)
    except NotFoundError:
        return None


def save(conf: Config) -> None:
    """Write the config atomically (temp file, fsync, rename); refreshes ``conf.digest``.
    A config that :func:`read_bytes` would refuse is not written (see :func:`check_size`)."""
    data = conf.to_bytes()
    check_size(data)
    path = paths.ct_conf(conf.vmid)
    atomic.write_bytes(path, data, mode=None if path.exists() else CONF_MODE)
    conf.read_from(data)


def remove(vmid: int) -> None:
    """Delete the config file (the last step of destroy)."""
    try:
        os.unlink(paths.ct_conf(vmid))
    except FileNotFoundError:
        raise NotFoundError(f"Configuration file '{cfs_path(vmid)}' does not exist") from None


def list_vmids() -> list[int]:
    """The ids of all configs of this node, numerically sorted."""
    try:
        names = os.listdir(paths.lxc_conf_dir())
    except FileNotFoundError:
        return []
    # every entry of such a name, also one that is no regular file: it is listed (as broken)
    # and its id is taken, rather than silently left out
    return sorted(int(m.group(1)) for n in names if (m := CONF_RE.fullmatch(n)))


def check_lock(conf: Config) -> None:
    """``CT is locked (<value>)`` when the config has a ``lock:``."""
    check_lock_value(conf.lock)


def check_protection(conf: Config, message: str) -> None:
    """``<message> - protection mode enabled`` when ``protection: 1``."""
    if conf.protection:
        raise StateError(f"{message} - protection mode enabled")


def set_lock(conf: Config, lock: str) -> None:
    """Set ``lock:`` after checking there is none (Proxmox's ``set_lock``)."""
    check_lock(conf)
    conf.set("lock", lock)


def remove_lock(conf: Config, lock: str | None = None) -> None:
    """Remove ``lock:``; with ``lock`` given, only that lock (Proxmox's ``remove_lock``)."""
    current = conf.lock
    if not current:
        wanted = f"'{lock}' " if lock is not None else "any"
        raise LockError(f"no lock found trying to remove {wanted} lock")
    if lock is not None and current != lock:
        raise LockError(f"found lock '{current}' trying to remove '{lock}' lock")
    conf.delete("lock")


def drop_lock(vmid: int, lock: str) -> bool:
    """Remove ``lock: <lock>`` of CT ``vmid`` if it still is its lock, and save: an operation
    ending or undoing its own lock leaves any other lock alone. Whether it removed it."""
    conf = load(vmid)
    if conf.lock != lock:
        return False
    conf.delete("lock")
    save(conf)
    return True
