"""The backups of a restic storage, read from a real repository that others share: snapshots
whose tags or times no volume name can hold are not ours and are skipped, never a crash."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import paths
from shared.errors import StorageError
from shared.storage import resticbackups
from shared.storage.api import list_backups
from shared.storage.resticplugin import ResticStorage


def backup(
    store: ResticStorage,
    source: Path,
    tags: str,
    when: str,
    tz: str = "UTC",
    host: str | None = None,
) -> None:
    """A snapshot written by restic itself, as any writer of a shared repository can."""
    env = {**store.repo.environment(), "TZ": tz}
    hostarg = ["--host", host] if host is not None else []
    subprocess.run(
        ["restic", "--quiet", *store.repo.global_args(), "backup", "--tag", tags,
         "--time", when, *hostarg, str(source)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip


def test_hostile_snapshots_are_skipped(restic_store: ResticStorage, tmp_path: Path) -> None:
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    ours = "vzdump,type=lxc,vmid=900000123,size=²"
    backup(store, source, ours, "2026-11-01 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=²³⁴", "2026-11-02 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=0123", "2026-11-03 01:00:00")
    backup(store, source, "vzdump,type=lxc,vmid=900000123", "9999-12-31 23:00:00", "EST5EDT")
    backup(store, source, "vzdump,type=lxc,vmid=900000123", "0001-01-01 00:00:00")
    for vmid in (None, 900000123):
        (entry,) = list_backups("offsite", vmid)
        assert entry.volid == "offsite:backup/ct/900000123/2026-11-01T01:00:00Z"
        assert entry.size == 0  # a size tag int() cannot read counts as unknown


def held(locks: Path) -> bool:
    """A lock file in place (the local backend writes it under a temporary name first)."""
    return any(len(p.name) == 64 for p in locks.iterdir())


def test_a_listing_does_not_wait_for_an_exclusive_user_of_the_repository(
    restic_store: ResticStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a forget or prune (this host's retention in a parallel run, another host's) holds the
    # repository alone for a while: a listing reads only snapshot files, without a lock
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    backup(store, source, "vzdump,type=lxc,vmid=900000124", "2026-11-01 01:00:00")
    locks = Path(store.repo.repository) / "locks"
    prune = subprocess.Popen(
        ["restic", "--quiet", *store.repo.global_args(), "prune"],
        env=store.repo.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not held(locks) and prune.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(prune.pid, signal.SIGSTOP)  # holding its exclusive lock, alive (not stale)
        if prune.poll() is not None or not held(locks):
            pytest.skip("restic prune was done before it could be held")  # (not seen here)
        started = time.monotonic()
        assert len(list_backups("offsite", 900000124)) == 1
        assert time.monotonic() - started < 1.5
        assert "waiting for its lock" not in capsys.readouterr().err
        assert held(locks)  # the prune still holds it
    finally:
        resume(prune)
        prune.wait(timeout=60)


def resume(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)


def test_a_volid_that_another_host_shares_names_this_nodes_snapshot(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """Two hosts back up a guest 900000123 in the same second: the volume id names this node's
    snapshot (restore and every later retention of this host failed with 'names 2
    snapshots'); removing it leaves the other host's alone."""
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    volname = f"backup/ct/900000123/{stamp}"
    tags = f"vzdump,type=lxc,vmid=900000123,time={stamp}"
    backup(store, source, tags, "2026-01-01 10:00:00", host="otherhost")
    backup(store, source, tags, "2026-01-01 10:00:00", host=paths.node_name())
    snap = resticbackups.find(store, volname)
    assert snap.host == paths.node_name()
    resticbackups.remove(store, volname, reclaim=False)
    assert [s.host for s in resticbackups.snapshots(store)] == ["otherhost"]
    assert resticbackups.find(store, volname).host == "otherhost"  # the only one: for recovery


def test_a_volid_of_several_other_hosts_is_refused_naming_them(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    tags = f"vzdump,type=lxc,vmid=900000123,time={stamp}"
    for host in ("otherhost", "third\x1b[2Jhost"):
        backup(store, source, tags, "2026-01-01 10:00:00", host=host)
    with pytest.raises(StorageError) as err:
        resticbackups.find(store, f"backup/ct/900000123/{stamp}")
    assert str(err.value) == (
        f"backup 'offsite:backup/ct/900000123/{stamp}' names 2 snapshots "
        r"(hosts: otherhost, third\x1b[2Jhost)"
    )
    assert err.value.hint == f"none is this node's ('{paths.node_name()}')"


def ours(store: ResticStorage, tmp_path: Path, times: list[str]) -> None:
    """Backups of CT 900000123 by this node, one at each UTC time."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    for when in times:
        stamp = when.replace(" ", "T") + "Z"
        backup(store, source, f"vzdump,type=lxc,vmid=900000123,time={stamp}", when,
               host=paths.node_name())  # fmt: skip


def test_removing_a_backup_removes_its_task_log(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """The log in var/log/vzdump/restic/<storage>/ stayed for ever after the snapshot was
    forgotten (pruned or removed)."""
    store = restic_store
    ours(store, tmp_path, ["2026-01-01 10:00:00", "2026-01-02 10:00:00"])
    first, second = resticbackups.list_backups(store)
    for e in (first, second):
        write_log(e.path, e.volid)
    resticbackups.remove(store, "backup/ct/900000123/2026-01-01T10:00:00Z", reclaim=False)
    assert not first.path.exists()
    assert second.path.exists()  # the other backup's stays


def write_log(path: Path, volid: str) -> None:
    """A task log as a restic backup writes it: it names its backup near the top."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"INFO: starting new backup job\nINFO: creating restic backup '{volid}'\n")


def test_a_pruned_backup_s_log_is_found_whatever_the_zone_is_now(
    restic_store: ResticStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logs are named in the local time of their backup. Hourly backups made under UTC,
    removed under Europe/Berlin (an hour ahead): the name this zone gives the 09:00Z backup's
    log was the 10:00Z one's, which went, and the 09:00Z one's stayed for good."""
    store = restic_store
    ours(store, tmp_path, ["2026-01-01 09:00:00", "2026-01-01 10:00:00"])
    logdir = resticbackups.list_backups(store)[0].path.parent
    for hour in ("09", "10"):  # named under UTC, as the backups were
        volid = f"{store.id}:backup/ct/900000123/2026-01-01T{hour}:00:00Z"
        write_log(logdir / f"vzdump-lxc-900000123-2026_01_01-{hour}_00_00.log", volid)
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        resticbackups.remove(store, "backup/ct/900000123/2026-01-01T09:00:00Z", reclaim=False)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert sorted(p.name for p in logdir.iterdir()) == [
        "vzdump-lxc-900000123-2026_01_01-10_00_00.log"
    ]


def test_a_log_is_never_removed_through_a_symlink(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    backup(store, source, f"vzdump,type=lxc,vmid=900000123,time={stamp}", "2026-01-01 10:00:00")
    (e,) = resticbackups.list_backups(store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / e.path.name).write_text("not a log of ours\n")
    logdir = e.path.parent
    logdir.parent.mkdir(parents=True, exist_ok=True)
    if logdir.exists():
        logdir.rmdir()
    logdir.symlink_to(elsewhere)
    resticbackups.remove(store, f"backup/ct/900000123/{stamp}", reclaim=False)
    assert resticbackups.snapshots(store) == []  # removed all the same
    assert (elsewhere / e.path.name).read_text() == "not a log of ours\n"
    logdir.unlink()


@pytest.mark.parametrize(
    "text", ["2026-13-45T99:99:99Z", "0000-00-00T00:00:00Z", "2026-02-30T10:00:00+99:00"]
)
def test_a_time_of_the_right_shape_that_is_no_time_is_one_error(text: str) -> None:
    """``vzdump export <storage>:backup/ct/100/2026-13-45T99:99:99Z`` ended in a ValueError
    traceback (month must be in 1..12)."""
    with pytest.raises(StorageError, match=rf"^unreadable snapshot time '{re.escape(text)}'$"):
        resticbackups.parse_restic_time(text)
    assert resticbackups.parse_restic_time("2026-01-02T03:04:05Z") == 1767323045


def killed_retag(store: ResticStorage, volname: str, change: Callable[[], None]) -> None:
    """``change`` re-tags the backup, then the snapshot file it replaced is put back: what
    ``restic tag`` killed between saving the new snapshot and deleting the old one leaves."""
    snapshots = Path(store.repo.repository) / "snapshots"
    before = {p.name: p.read_bytes() for p in snapshots.iterdir()}
    change()
    for name, data in before.items():
        if not (snapshots / name).exists():
            (snapshots / name).write_bytes(data)
    assert len(list(snapshots.iterdir())) == len(before) + 1


def one_backup(store: ResticStorage, tmp_path: Path) -> str:
    """This node's backup of guest 900000123 at 2026-01-01 10:00 UTC; its volume name."""
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    backup(store, source, f"vzdump,type=lxc,vmid=900000123,time={stamp}",
           "2026-01-01 10:00:00", host=paths.node_name())  # fmt: skip
    return f"backup/ct/900000123/{stamp}"


def raw_ids(store: ResticStorage) -> set[str]:
    return {p.name for p in (Path(store.repo.repository) / "snapshots").iterdir()}


def test_a_killed_retag_leaves_one_backup_that_restores_and_is_removed_whole(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """Killed while protecting a backup, restic left the old snapshot beside the re-tagged
    one: its volume id named 2 snapshots, and restore and every later retention refused it."""
    store = restic_store
    volname = one_backup(store, tmp_path)
    killed_retag(store, volname, lambda: resticbackups.set_protected(store, volname, True))
    (snap,) = resticbackups.snapshots(store)
    assert snap.protected and len(snap.copies) == 1  # the re-tagged one is the backup
    assert resticbackups.find(store, volname) == snap
    (entry,) = list_backups("offsite")
    assert entry.volid == f"offsite:{volname}" and entry.protected
    with pytest.raises(StorageError, match="cannot remove protected backup"):
        resticbackups.remove(store, volname, reclaim=False)
    resticbackups.set_protected(store, volname, False)
    assert len(raw_ids(store)) == 1  # the stale copy went with the re-tag
    resticbackups.remove(store, volname, reclaim=False)
    assert raw_ids(store) == set()


def test_copies_that_both_replaced_one_keep_its_protection(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """Two re-tagged copies of one backup (a re-tag of a re-tagged snapshot, killed): neither
    replaced the other, and a protected copy is the backup, so retention never removes it."""
    store = restic_store
    volname = one_backup(store, tmp_path)
    resticbackups.set_notes(store, volname, "first")
    killed_retag(store, volname, lambda: resticbackups.set_protected(store, volname, True))
    (snap,) = resticbackups.snapshots(store)
    assert snap.protected and snap.notes == "first" and len(snap.copies) == 1
    resticbackups.set_notes(store, volname, "second")
    (snap,) = resticbackups.snapshots(store)
    assert (snap.protected, snap.notes, snap.copies) == (True, "second", ())
    assert raw_ids(store) == {snap.id}


def test_two_backups_of_one_second_stay_two(restic_store: ResticStorage, tmp_path: Path) -> None:
    """Only copies of one backup (the same data, one replacing the other) are made one: two
    backups that a volume id cannot tell apart are still refused, never one of them picked."""
    store = restic_store
    source = tmp_path / "src"
    source.mkdir()
    stamp = "2026-01-01T10:00:00Z"
    for data in ("a", "b"):
        (source / "f").write_text(data)
        backup(store, source, f"vzdump,type=lxc,vmid=900000123,time={stamp}",
               "2026-01-01 10:00:00", host=paths.node_name())  # fmt: skip
    assert len(resticbackups.snapshots(store)) == 2
    with pytest.raises(StorageError, match="names 2 snapshots"):
        resticbackups.find(store, f"backup/ct/900000123/{stamp}")
