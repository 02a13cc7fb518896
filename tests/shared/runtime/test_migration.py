"""The records a migration leaves on a host, and how the next command treats them (issue 16).
The kills of real migrations are in tests/pct/migrate/test_killed.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared import owner, paths
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.runtime import migration, recovery
from shared.storage.api import volume_path
from shared.storage.volumes import alloc_volume

TOKEN = "0123456789abcdef0123456789abcdef"


def dead_record(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid 0 never belongs to a live owner
    path.write_text(json.dumps({**data, "pid": 0, "start": 1, "boot": owner.boot_id()}))


def test_the_scheduler_pass_rolls_back_a_dead_incoming_session(ctroot: Path, vmid: int) -> None:
    store.save(Config(vmid, {"lock": "migrate"}))  # the session's reservation
    dead_record(migration.incoming_record(vmid), {"vmid": vmid, "volumes": []})
    assert migration.recorded_vmids() == [vmid]
    lines: list[str] = []
    recovery.recover_all(lines.append)
    assert not store.exists(vmid)
    assert not migration.incoming_record(vmid).exists()
    assert f"CT {vmid}: rolling back an interrupted migration into this host" in lines


def test_a_live_session_and_a_foreign_config_are_left_alone(ctroot: Path, vmid: int) -> None:
    store.save(Config(vmid, {"lock": "migrate"}))
    owner.write_record(migration.incoming_record(vmid), {"vmid": vmid, "volumes": []})
    assert recovery.recover(vmid, print) is None
    assert store.exists(vmid) and migration.incoming_record(vmid).exists()
    # dead, but the config is no longer the reservation (someone unlocked it): kept
    dead_record(migration.incoming_record(vmid), {"vmid": vmid, "volumes": []})
    conf = store.load(vmid)
    conf.delete("lock")
    store.save(conf)
    recovery.recover(vmid, print)
    assert store.exists(vmid) and not migration.incoming_record(vmid).exists()


def test_a_dead_source_after_the_commit_is_removed_as_the_migration_would(
    ctroot: Path, vmid: int
) -> None:
    volid = alloc_volume("local", vmid, 0, fmt="subvol")
    volume = volume_path(volid)
    (volume / "data.bin").write_bytes(b"moved")
    store.save(Config(vmid, {"lock": "migrate", "rootfs": f"{volid},size=0T"}))
    paths.firewall_conf(vmid).parent.mkdir(parents=True, exist_ok=True)
    paths.firewall_conf(vmid).write_text("[OPTIONS]\nenable: 1\n")
    data = {"vmid": vmid, "remote": "far", "phase": "committed", "stopped": True}
    dead_record(migration.outgoing_record(vmid), {**data, "delete": True, "snapshots": {}})
    lines: list[str] = []
    dead = recovery.recover(vmid, lines.append)
    assert dead is not None and dead.op == "migrate"
    assert f"CT {vmid}: remote 'far' has the container now - removing this copy" in lines
    assert not store.exists(vmid) and not volume.exists()
    assert not paths.firewall_conf(vmid).exists()
    assert not migration.outgoing_record(vmid).exists()


def test_a_dead_source_still_committing_stays_locked_until_the_target_answers(
    ctroot: Path, vmid: int
) -> None:
    # the target may have the container, or not: nothing is removed on a guess. Here it
    # cannot be asked (no such remote): the record stays for the next command to ask again
    store.save(Config(vmid, {"lock": "migrate", "hostname": "moved"}))
    data = {"vmid": vmid, "remote": "far", "phase": "committing", "stopped": True}
    record = {**data, "delete": True, "snapshots": {}, "target_vmid": vmid, "token": TOKEN}
    dead_record(migration.outgoing_record(vmid), record)
    for _ in range(2):
        lines: list[str] = []
        recovery.recover(vmid, lines.append)
        assert store.load(vmid).lock == "migrate"
        assert f"CT {vmid}: remote 'far' could not be asked - the next command asks again" in lines
        assert any("remote 'far' may have the container now" in line for line in lines)
        assert migration.outgoing_record(vmid).exists()
    # someone checked the target and unlocked this copy: the record goes, nothing else
    migration.unlock(vmid)
    recovery.recover(vmid, print)
    assert not migration.outgoing_record(vmid).exists() and store.exists(vmid)


def test_a_dead_source_after_the_commit_stays_locked(ctroot: Path, vmid: int) -> None:
    # remote-migrate without --delete (and a record of before the key existed): kept
    store.save(Config(vmid, {"lock": "migrate", "hostname": "moved"}))
    data = {"vmid": vmid, "remote": "far", "phase": "committed", "stopped": True}
    dead_record(migration.outgoing_record(vmid), {**data, "snapshots": {}})
    lines: list[str] = []
    dead = recovery.recover(vmid, lines.append)
    assert dead is not None and dead.op == "migrate" and not dead.stopped
    assert store.load(vmid).lock == "migrate"
    assert not migration.outgoing_record(vmid).exists()
    assert any("remote 'far' has the container now" in line for line in lines)


def test_the_target_tells_a_committed_migration_by_its_token(ctroot: Path, vmid: int) -> None:
    # a session that committed and then died (its source lost the answer)
    store.save(Config(vmid, {"lock": "migrate", "hostname": "moved"}))
    rec = {"vmid": vmid, "volumes": [], "committed": True, "token": TOKEN}
    dead_record(migration.incoming_record(vmid), rec)
    assert migration.commit_outcome(vmid, TOKEN, print) == "committed"
    assert store.load(vmid).lock is None  # kept, unlocked
    assert not migration.incoming_record(vmid).exists()
    assert migration.commit_outcome(vmid, TOKEN, print) == "committed"  # asked again
    assert migration.commit_outcome(vmid, "f" * 32, print) == "none"  # another migration


def test_the_target_tells_a_rolled_back_or_running_session(ctroot: Path, vmid: int) -> None:
    store.save(Config(vmid, {"lock": "migrate"}))
    owner.write_record(migration.incoming_record(vmid), {"vmid": vmid, "volumes": []})
    assert migration.commit_outcome(vmid, TOKEN, print) == "pending"  # its session still runs
    dead_record(migration.incoming_record(vmid), {"vmid": vmid, "volumes": []})
    assert migration.commit_outcome(vmid, TOKEN, print) == "none"
    assert not store.exists(vmid)  # rolled back on the way


def test_old_commit_notes_go_when_a_new_one_is_written(ctroot: Path, vmid: int) -> None:
    old = migration.done_record(vmid + 1)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text('{"token": "x"}\n')
    os.utime(old, (0, 0))
    store.save(Config(vmid, {"lock": "migrate"}))
    rec = {"vmid": vmid, "volumes": [], "committed": True, "token": TOKEN}
    dead_record(migration.incoming_record(vmid), rec)
    migration.recover_incoming(vmid, print)
    assert migration.done_record(vmid).exists() and not old.exists()
