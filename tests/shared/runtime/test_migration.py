"""The records a migration leaves on a host, and how the next command treats them (issue 16).
The kills of real migrations are in tests/pct/migrate/test_killed.py."""

from __future__ import annotations

import json
from pathlib import Path

from shared import owner
from shared.ctconfig import store
from shared.ctconfig.config import Config
from shared.runtime import migration, recovery


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


def test_a_dead_source_after_the_commit_stays_locked(ctroot: Path, vmid: int) -> None:
    store.save(Config(vmid, {"lock": "migrate", "hostname": "moved"}))
    data = {"vmid": vmid, "remote": "far", "phase": "committed", "stopped": True}
    dead_record(migration.outgoing_record(vmid), {**data, "snapshots": {}})
    lines: list[str] = []
    dead = recovery.recover(vmid, lines.append)
    assert dead is not None and dead.op == "migrate" and not dead.stopped
    assert store.load(vmid).lock == "migrate"
    assert not migration.outgoing_record(vmid).exists()
    assert any("remote 'far' has the container now" in line for line in lines)
