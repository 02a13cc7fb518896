"""Configs on disk under a scratch CTKIT_ROOT: load, save, list, lock and protection checks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import paths
from shared.ctconfig import store
from shared.ctconfig.config import Config, parse_config
from shared.errors import ConfigError, LockError, NotFoundError, StateError

GOLDEN = Path(__file__).parent / "golden"


def test_load_missing_config_names_the_cluster_path(ctroot: Path) -> None:
    node = paths.node_name()
    with pytest.raises(NotFoundError) as info:
        store.load(900000001)
    assert str(info.value) == f"Configuration file 'nodes/{node}/lxc/900000001.conf' does not exist"
    assert store.load_or_none(900000001) is None
    assert not store.exists(900000001)


def test_save_and_load_round_trip(ctroot: Path) -> None:
    data = (GOLDEN / "proxmox" / "105-helper-docker.conf").read_bytes()
    conf = parse_config(data, 900000105)
    store.save(conf)
    path = ctroot / "etc/pve/lxc/900000105.conf"
    assert path.read_bytes() == data
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert conf.digest == hashlib.sha1(data).hexdigest()
    again = store.load(900000105)
    assert again.digest == conf.digest
    assert again.get("memory") == 2048
    again.set("memory", 4096)
    store.save(again)
    assert again.digest == hashlib.sha1(path.read_bytes()).hexdigest()
    assert store.load(900000105).get("memory") == 4096
    assert [p.name for p in path.parent.iterdir()] == ["900000105.conf"]  # no temp files left


def test_list_vmids(ctroot: Path) -> None:
    assert store.list_vmids() == []
    for vmid in (900000200, 900000100, 900000030):
        store.save(Config(vmid, {"memory": "512"}))
    confdir = ctroot / "etc/pve/lxc"
    (confdir / "99.conf").write_text("memory: 1\n")  # below the VMID range
    (confdir / "notes.txt").write_text("x")
    (confdir / "900000300.conf.tmp").write_text("x")
    (confdir / "900000400.conf").mkdir()  # no config, but the id is taken: listed as broken
    assert store.list_vmids() == [900000030, 900000100, 900000200, 900000400]


def test_remove(ctroot: Path) -> None:
    store.save(Config(900000001, {"memory": "512"}))
    store.remove(900000001)
    assert not store.exists(900000001)
    with pytest.raises(NotFoundError):
        store.remove(900000001)


def test_check_lock_and_set_lock() -> None:
    conf = Config(100, {"memory": "512"})
    store.check_lock(conf)
    store.set_lock(conf, "backup")
    assert conf.lock == "backup"
    with pytest.raises(LockError, match=r"^CT is locked \(backup\)$"):
        store.check_lock(conf)
    with pytest.raises(LockError, match=r"^CT is locked \(backup\)$"):
        store.set_lock(conf, "mounted")


def test_remove_lock_case_41() -> None:
    conf = Config(100, {"memory": "512"})
    with pytest.raises(LockError) as info:
        store.remove_lock(conf)
    assert str(info.value) == "no lock found trying to remove any lock"
    conf.set("lock", "mounted")
    with pytest.raises(LockError, match="found lock 'mounted' trying to remove 'backup' lock"):
        store.remove_lock(conf, "backup")
    store.remove_lock(conf, "mounted")
    assert conf.lock is None


def test_drop_lock_removes_only_the_named_lock(ctroot: Path) -> None:
    store.save(Config(900000001, {"memory": "512", "lock": "disk"}))
    assert store.drop_lock(900000001, "create") is False
    assert store.load(900000001).lock == "disk"
    assert store.drop_lock(900000001, "disk") is True
    conf = store.load(900000001)
    assert conf.lock is None and conf.get_raw("memory") == "512"
    assert store.drop_lock(900000001, "disk") is False
    with pytest.raises(NotFoundError):
        store.drop_lock(900000002, "disk")


def test_check_protection() -> None:
    conf = Config(100, {"protection": "0"})
    store.check_protection(conf, "can't remove CT 100")
    conf.set("protection", True)
    with pytest.raises(StateError) as info:
        store.check_protection(conf, "can't remove CT 100")
    assert str(info.value) == "can't remove CT 100 - protection mode enabled"


@pytest.mark.parametrize("kind", ["fifo", "symlink", "huge", "directory"])
def test_only_a_bounded_regular_file_is_read_as_a_config(ctroot: Path, kind: str) -> None:
    """A FIFO blocked every command that read the config; a symlink to /dev/zero or a huge
    file took the host's memory (and a symlink to /etc/shadow printed it as config lines).
    Such a file is a config that cannot be read (exit 12, as a config that does not parse);
    it was exit 6, and pct list left it out without a word while its id counted as free."""
    path = paths.ct_conf(100)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        with open(path, "wb") as fh:
            fh.write(b"arch: amd64\n")
            fh.truncate(store.MAX_CONF + 1)
    with pytest.raises(ConfigError, match=r"^Configuration file 'nodes/.*/lxc/100\.conf' is "):
        store.load(100)
    # the id is taken, and listed (as broken by the commands that list), not left out
    assert store.exists(100) and store.list_vmids() == [100]


def test_a_config_too_large_to_read_back_is_not_written(ctroot: Path) -> None:
    """save() refuses what load() would refuse: the file on disk stays as it was."""
    conf = Config(900000001, {"memory": "512"})
    store.save(conf)
    before = store.read_bytes(900000001)
    conf.values.update({f"x{i}": "v" * 40 for i in range(30_000)})
    with pytest.raises(ConfigError, match=r"^configuration too large \(\d+ bytes, more than "):
        store.save(conf)
    assert store.read_bytes(900000001) == before
    assert [p.name for p in paths.ct_conf(900000001).parent.iterdir()] == ["900000001.conf"]


def test_the_digest_is_that_of_the_file_until_the_next_save(ctroot: Path) -> None:
    conf = Config(900000001, {"memory": "512"})
    assert conf.digest is None  # never read nor written
    store.save(conf)
    written = conf.digest
    conf.set("memory", 1024)  # changed in memory only: still the file's digest
    assert conf.digest == written == store.load(900000001).digest
    store.save(conf)
    assert conf.digest != written


def test_reading_a_config_leaves_hashlib_unloaded(ctroot: Path) -> None:
    """The digest is computed when asked: a command that only reads configs does not load
    hashlib (and OpenSSL with it, a few ms of every start)."""
    store.save(Config(900000001, {"memory": "512"}))
    code = (
        "import sys; from shared.ctconfig import store;"
        " conf = store.load(900000001); print('hashlib' in sys.modules);"
        " conf.digest; print('hashlib' in sys.modules)"
    )
    env = {**os.environ, "CTKIT_ROOT": str(ctroot)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
