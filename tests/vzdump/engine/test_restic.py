"""Backups into a restic storage: real containers, a real local repository (vzdump with
``--storage`` of type restic, listing, notes, protection, retention, change detection)."""

from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.errors import LockError

from .conftest import Host, log_messages, only_archive, start_vzdump, tar_list, vzdump

pytestmark = pytest.mark.lxc

PASSWORD = "correct horse battery staple"


@pytest.fixture
def rhost(ctroot: Path, busybox_template: Path, new_vmid: Callable[[], int]) -> Iterator[Host]:
    from shared.testbed import stop_containers

    yield Host(ctroot, busybox_template, new_vmid)
    stop_containers(ctroot)


def add_storage(root: Path, sid: str = "offsite", repo: str | None = None, *extra: str) -> Path:
    pw = root / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    repo = repo or str(root / "repo")
    res = vzdump("storage", "add", "restic", sid, "--repository", repo,
                 "--password-file", str(pw), "--init", *extra)  # fmt: skip
    assert res.rc == 0, res.err
    return Path(repo)


def restic_json(root: Path, *args: str) -> object:
    return json.loads(restic_cmd(root, *args, "--json"))


def restic_env(root: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": str(root / "repo"),
            "RESTIC_PASSWORD_FILE": str(root / "etc/pve/priv/storage/offsite.pw"),
            "RESTIC_CACHE_DIR": str(root / "cache")}  # fmt: skip


def restic_cmd(root: Path, *args: str) -> str:
    env = restic_env(root)
    out = subprocess.run(["restic", *args], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def listing(sid: str = "offsite") -> list[dict[str, object]]:
    res = vzdump("list", sid, "--output-format", "json")
    assert res.rc == 0, res.err
    data = json.loads(res.out)
    assert isinstance(data, list)
    return data


def test_storage_section_and_secrets(rhost: Host) -> None:
    """The section is written without secrets; the password file is 0600; restic never gets the
    password on argv; a Proxmox storage.cfg with a restic section beside dir parses."""
    add_storage(rhost.root, "offsite", None, "--prune-backups", "keep-last=2")
    cfg = (rhost.root / "etc/pve/storage.cfg").read_text()
    assert cfg == (
        f"restic: offsite\n\trepository {rhost.root / 'repo'}\n\tcontent backup\n"
        "\tprune-backups keep-last=2\n"
    )
    assert PASSWORD not in cfg
    pw = rhost.root / "etc/pve/priv/storage/offsite.pw"
    assert pw.stat().st_mode & 0o777 == 0o600
    assert pw.parent.stat().st_mode & 0o777 == pw.parent.parent.stat().st_mode & 0o777 == 0o700
    assert (rhost.root / "repo/config").is_file()
    # the same repository with a wrong password: one line, non-zero
    bad = rhost.root / "bad.txt"
    bad.write_text("wrong\n")
    res = vzdump("storage", "add", "restic", "other", "--repository", str(rhost.root / "repo"),
                 "--password-file", str(bad))  # fmt: skip
    assert res.rc != 0 and res.lines == ["restic storage 'other': wrong repository password"]
    assert not (rhost.root / "etc/pve/priv/storage/other.pw").exists()
    res = vzdump("storage", "add", "restic", "empty", "--repository", str(rhost.root / "none"),
                 "--password-file", str(bad))  # fmt: skip
    assert res.rc != 0 and "not initialised" in res.err and len(res.lines) == 1
    res = vzdump("storage", "remove", "offsite")
    assert res.rc == 0 and not pw.exists() and (rhost.root / "repo/config").is_file()


def test_backup_list_second_run_and_prune(rhost: Host) -> None:
    """stop mode of a privileged and an unprivileged CT; volume ids in PBS form, tags, notes,
    protection; an unchanged second backup adds < 1% of the CT's size; retention removes the
    oldest unprotected snapshot and prune reclaims its data. The storage lacks this node's
    key at first (as one added by an older ctkit): the first backup adds it."""
    add_storage(rhost.root)
    secrets = rhost.root / "etc/pve/priv/storage"
    for name in ("offsite.key.json", "offsite.key"):
        (secrets / name).unlink()
    for unpriv in (False, True):
        ct = rhost.create(unprivileged=unpriv)
        ct.write("srv/big.bin", os.urandom(4 << 20), uid=1000)
        res = vzdump(str(ct.vmid), "--storage", "offsite", "--notes-template", "n {{vmid}}",
                     "--protected", "1", "--script", str(rhost.hook()))  # fmt: skip
        assert res.rc == 0, res.err
        key = json.loads((secrets / "offsite.key.json").read_text())["key"]
        assert (rhost.root / "repo/keys" / key).is_file()
        targets = {c["TARGET"] for c in rhost.hook_calls() if c["args"].startswith("backup-end")}
        rows = listing()
        mine = [r for r in rows if r["vmid"] == ct.vmid]
        assert len(mine) == 1
        row = mine[0]
        assert str(row["volid"]).startswith(f"offsite:backup/ct/{ct.vmid}/")
        assert row["protected"] == 1 and row["notes"] == f"n {ct.vmid}"
        assert targets == {row["volid"]}  # hooks see the volume id as TARGET
        assert int(str(row["size"])) > 4 << 20
        # the second backup of the unchanged CT, read back to the end with --verify
        repo_before = du(rhost.root / "repo")
        res = vzdump(str(ct.vmid), "--storage", "offsite", "--verify")
        assert res.rc == 0, res.err
        assert "INFO: verifying backup" in res.lines
        assert any(ln.startswith("INFO: backup verified: ") for ln in res.lines), res.err
        added = du(rhost.root / "repo") - repo_before
        assert added < (4 << 20) // 100, added
        msgs = log_messages(next((rhost.root / "var/log/vzdump/restic/offsite").glob(
            f"vzdump-lxc-{ct.vmid}-*.log")))  # fmt: skip
        assert any("unmodified files" in m for m in msgs)
        snaps = restic_json(rhost.root, "snapshots", "--tag", f"vmid={ct.vmid}")
        assert isinstance(snaps, list) and len(snaps) == 2
        tags = set(snaps[0]["tags"])
        assert {"vzdump", "type=lxc", f"vmid={ct.vmid}"} <= tags
        assert ("idmap=u:0:100000:65536/g:0:100000:65536" in tags) == unpriv
    # retention: keep-last=1 keeps the newest and the protected one of each CT
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1", "--dry-run",
                 "--output-format", "json")  # fmt: skip
    marks = sorted(r["mark"] for r in json.loads(res.out))
    assert marks == ["keep", "keep", "protected", "protected"], marks
    rows = listing()
    one = next(r for r in rows if r["protected"] == 1)
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1", "--output-format", "json")
    assert res.rc == 0, res.err
    assert len(listing()) == 4  # protected ones are never removed, never counted
    # unprotect one: the next prune removes it
    from shared.storage.api import set_backup_protected

    set_backup_protected(str(one["volid"]), False)
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    assert len(listing()) == 3


def test_retention_of_one_guest_never_touches_another(rhost: Host) -> None:
    """restic ORs separate ``--tag`` options: a guest's listing once held every guest's
    backups, so its retention removed the others' (and, in a parallel run, its own new one)."""
    add_storage(rhost.root)
    a, b = rhost.create(), rhost.create()
    for ct in (a, b, a):
        res = vzdump(str(ct.vmid), "--storage", "offsite")
        assert res.rc == 0, res.err
    res = vzdump("list", "offsite", "--vmid", str(b.vmid), "--output-format", "json")
    assert res.rc == 0 and [r["vmid"] for r in json.loads(res.out)] == [b.vmid], res.out
    res = vzdump("prune", "offsite", "--vmid", str(b.vmid), "--prune-backups", "keep-last=1",
                 "--dry-run", "--output-format", "json")  # fmt: skip
    assert res.rc == 0 and [r["mark"] for r in json.loads(res.out)] == ["keep"], res.out
    res = vzdump(str(b.vmid), "--storage", "offsite", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    counts = {ct.vmid: sum(1 for r in listing() if r["vmid"] == ct.vmid) for ct in (a, b)}
    assert counts == {a.vmid: 2, b.vmid: 1}, res.err
    # two guests at once, each keeping its newest: both new backups stay; the space of what
    # both removed is reclaimed once, after the last guest
    res = vzdump(str(a.vmid), str(b.vmid), "--storage", "offsite", "--parallel", "2",
                 "--prune-backups", "keep-last=1")  # fmt: skip
    assert res.rc == 0, res.err
    reclaim = "INFO: reclaiming the space of removed backups on storage 'offsite'"
    assert res.lines.count(reclaim) == 1 and res.lines[-2] == reclaim, res.err
    rows = listing()
    assert sorted(int(str(r["vmid"])) for r in rows) == sorted([a.vmid, b.vmid]), rows
    log = res.err
    assert all(str(r["volid"]).endswith("/" + _newest(r["vmid"], log)) for r in rows), log


def test_bandwidth_limit_holds_for_the_upload(rhost: Host) -> None:
    """--bwlimit limits restic's upload to the repository; parallel workers share it."""
    add_storage(rhost.root)
    a, b = rhost.create(), rhost.create()
    for ct in (a, b):
        ct.write("srv/big.bin", os.urandom(3 << 20))  # incompressible: uploaded as it is
    res = vzdump(str(a.vmid), str(b.vmid), "--storage", "offsite", "--parallel", "2",
                 "--bwlimit", "1024")  # fmt: skip
    assert res.rc == 0, res.err
    # 6 MiB at 1 MiB/s in all (each worker 512 KiB/s), less restic's one-second burst
    assert res.seconds > 4.0, (res.seconds, res.err)
    assert len(listing()) == 2


def _newest(vmid: object, log: str) -> str:
    """The time of the backup this run made of ``vmid`` (from its 'creating' line)."""
    marker = f"offsite:backup/ct/{vmid}/"
    lines = [ln for ln in log.splitlines() if marker in ln and "creating" in ln]
    assert lines, log
    return lines[-1].split(marker, 1)[1].split("'")[0]


EXCLUDES = ["run", "config", "rootfs", "/var/foo*", "*.log", "/srv/cache/", "unclosed[",
            ".*", "/neg/[!x]", "./top", "/an/**/c"]  # fmt: skip


def test_exclude_paths_as_in_the_tar_path(rhost: Host) -> None:
    """The same --exclude-path patterns leave the same files in a restic snapshot as in a tar
    archive, also names that occur in the stage restic runs from (run, config, rootfs), which
    once excluded the whole container or its config; the listed size is what restic processed,
    measured before the backup, so no second restic run is needed for it."""
    add_storage(rhost.root)
    ct = rhost.create()
    for rel in (
        "srv/keep.txt",
        "srv/run/x",
        "etc/config/y",
        "opt/rootfs/z",
        "var/foo1",
        "var/foo/in",
        "var/fo",
        "srv/a.log",
        "srv/cache/c",
        "unclosed[",
        "tmp/t",
        "srv/.dot",
        "neg/x",
        "neg/a",
        "top",
        "srv/top",
        "an/c",
        "an/b/c",
    ):
        ct.write(rel, rel.encode())
    args = [arg for p in EXCLUDES for arg in ("--exclude-path", p)]
    res = vzdump(str(ct.vmid), "--storage", "offsite", *args)
    assert res.rc == 0, res.err
    assert "WARN: tar does not match exclusion with a trailing slash '/srv/cache/'" in res.err
    assert "unable to record the backup size" not in res.err
    res = vzdump(str(ct.vmid), "--dumpdir", str(rhost.dumpdir), *args)
    assert res.rc == 0, res.err
    in_tar = {m.name.removeprefix("./").rstrip("/") for m in tar_list(only_archive(
        rhost.dumpdir, ct.vmid)) if m.name.startswith("./")}  # fmt: skip
    in_tar -= {"", "etc/vzdump/pct.conf", "etc/vzdump/pct.fw"}  # the config members
    nodes = [json.loads(line) for line in restic_cmd(rhost.root, "ls", "--json", "latest")
             .splitlines()[1:]]  # fmt: skip
    in_restic = {n["path"].removeprefix("/rootfs/") for n in nodes
                 if n["path"].startswith("/rootfs/")}  # fmt: skip
    assert in_restic == in_tar
    assert {"srv/keep.txt", "var/fo", "srv/cache/c", "tmp", "neg/x", "srv/top", "an/c"} <= in_restic
    assert not {"srv/run", "etc/config", "opt/rootfs", "var/foo1", "srv/a.log", "unclosed[",
                "tmp/t", "srv/.dot", "neg/a", "top", "an/b/c"} & in_restic  # fmt: skip
    assert {n["path"] for n in nodes if n["path"].startswith("/config/")} == {
        "/config/pct.conf", "/config/pct.fw"}  # fmt: skip
    processed = sum(int(n.get("size") or 0) for n in nodes if n["type"] == "file")
    (row,) = listing()
    assert int(str(row["size"])) == processed


def test_a_size_restic_disagrees_with_is_corrected(rhost: Host) -> None:
    """Should restic process another amount than the walk measured, the tag is corrected."""
    from shared.storage.api import restic_volume
    from vzdump.engine.resticpath import record_size

    add_storage(rhost.root)
    ct = rhost.create()
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (row,) = listing()
    found = restic_volume(str(row["volid"]))
    assert found is not None
    snaps = restic_json(rhost.root, "snapshots")
    assert isinstance(snaps, list)
    record_size(found[0], snaps[0]["id"], int(str(row["size"])), 12345, print)
    (row,) = listing()
    assert row["size"] == 12345


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _twice(root: Path, ct_vmid: int, size: int, *args: str) -> list[str]:
    """Two backups; the second must add < 1% of ``size``; returns the second's log."""
    res = vzdump(str(ct_vmid), "--storage", "offsite", *args)
    assert res.rc == 0, res.err
    before = du(root / "repo")
    res = vzdump(str(ct_vmid), "--storage", "offsite", *args)
    assert res.rc == 0, res.err
    assert du(root / "repo") - before < size // 100
    return res.lines


def test_snapshot_mode_on_btrfs_and_suspend_mode(host: Host, btrfs: Path) -> None:
    """snapshot mode (btrfs, running CT): unchanged files are recognised as unmodified; suspend
    mode (a fresh rsync copy every run, so inode numbers and ctimes change): every file is read
    again, and what is uploaded is still only what changed. The container keeps running, thawed
    and unlocked."""
    add_storage(host.root)
    ct = host.create(rootfs="bt:0", start=True)
    ct.write("srv/big.bin", os.urandom(4 << 20))
    lines = _twice(host.root, ct.vmid, 4 << 20, "--mode", "snapshot")
    assert any("create storage snapshot 'vzdump'" in ln for ln in lines)
    assert any(" 0 new, 2 changed" in ln for ln in lines), "\n".join(lines)  # the config files
    assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
    ct2 = host.create(start=True)
    ct2.write("srv/big.bin", os.urandom(4 << 20))
    lines = _twice(host.root, ct2.vmid, 4 << 20, "--mode", "suspend")
    assert any("backup mode: suspend" in ln for ln in lines)
    # the copy of the whole container goes to /var/tmp, not beside the logs in /var/log
    sync = next(ln for ln in lines if "starting first sync" in ln)
    assert f" to {host.root}/var/tmp/vzdumptmp" in sync, sync
    summary = next(ln for ln in lines if "INFO: restic: 0 new, " in ln)
    assert " 0 unmodified files" in summary, summary  # read again (see resticpath), not trusted
    assert ct2.running() and ct2.freezer_state() == "THAWED" and "lock:" not in ct2.conf()


def _restic_pid(stage: Path, timeout: float = 30.0) -> int:
    """The pid of the restic backup that runs in ``stage`` (as soon as it exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (
                    os.readlink(entry / "cwd") == str(stage)
                    and b"restic" in (entry / "cmdline").read_bytes().split(b"\0")[0]
                ):
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.005)
    raise AssertionError("restic did not start")


def test_faults(rhost: Host) -> None:
    """Wrong password, unreachable and uninitialised repositories, restic killed mid-backup,
    a stale lock: one line each, non-zero, the CT running, thawed and unlocked, no snapshot
    listed, the stage unmounted; afterwards the repository passes 'restic check'."""
    add_storage(rhost.root)
    ct = rhost.create(start=True)
    ct.write("srv/big.bin", os.urandom(64 << 20))
    pw = rhost.root / "etc/pve/priv/storage/offsite.pw"

    def failed_backup(expected: str) -> None:
        res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
        assert res.rc != 0
        errors = [ln for ln in res.lines if "Backup of VM" in ln and "failed" in ln]
        assert errors == [f"ERROR: Backup of VM {ct.vmid} failed - {expected}"], res.err
        assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
        assert not list((rhost.root / "run/vzdump-restic").glob("*/rootfs"))

    # this node's key no longer in the repository: the backup goes on with the password
    record = pw.with_name("offsite.key.json")
    (rhost.root / "repo/keys" / json.loads(record.read_text())["key"]).unlink()
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    assert res.rc == 0, res.err
    (row,) = listing()
    assert not record.exists()  # dropped; the next backup makes a new one
    from shared.storage.api import remove_backup

    remove_backup(str(row["volid"]))
    pw.write_text("wrong\n")  # no key, and a wrong password
    failed_backup("restic storage 'offsite': wrong repository password")
    pw.write_text(PASSWORD + "\n")
    cfg = rhost.root / "etc/pve/storage.cfg"
    good = cfg.read_text()
    cfg.write_text(good.replace(str(rhost.root / "repo"), "rest:http://u:secret@127.0.0.1:1/"))
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc != 0 and "repository not reachable" in res.err and "secret" not in res.err
    cfg.write_text(good.replace(str(rhost.root / "repo"), str(rhost.root / "norepo")))
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc != 0 and "not initialised" in res.err
    cfg.write_text(good)
    # restic killed while it reads the container
    proc = start_vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    os.kill(_restic_pid(rhost.root / f"run/vzdump-restic/{ct.vmid}"), signal.SIGKILL)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert (
        f"Backup of VM {ct.vmid} failed - restic storage 'offsite': restic killed by signal 9"
        in err.decode()
    )
    assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
    assert listing() == []
    # vzdump itself terminated while restic runs: restic is stopped too, nothing is left
    proc = start_vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    pid = _restic_pid(rhost.root / f"run/vzdump-restic/{ct.vmid}")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not Path(f"/proc/{pid}").exists()
    assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
    assert listing() == [] and not list((rhost.root / "run/vzdump-restic").glob("*/rootfs"))
    # its lock is stale: pruning says so in one line, unlock clears it, check passes
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1")
    assert res.rc == 0  # nothing to remove: no exclusive lock needed
    assert "no errors were found" in restic_cmd(rhost.root, "check")
    res = vzdump("storage", "unlock", "offsite")
    assert res.rc == 0, res.err
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    assert len(listing()) == 1


def test_stale_lock_of_a_killed_backup(rhost: Host) -> None:
    """restic killed mid-backup leaves its lock in the repository. The next backup runs (backups
    share the lock); retention, which needs the repository alone, clears the stale lock (that
    of a process of this host that is gone) with 'restic unlock' and runs. A live lock (a backup
    still running) is waited for, and 'vzdump storage unlock' leaves it."""
    repo = add_storage(rhost.root)
    ct = rhost.create()
    ct.write("srv/big.bin", os.urandom(64 << 20))
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0

    def started_backup() -> tuple[subprocess.Popen[bytes], int]:
        time.sleep(1.1)  # snapshot times have one-second resolution
        proc = start_vzdump(str(ct.vmid), "--storage", "offsite")
        pid = _restic_pid(rhost.root / f"run/vzdump-restic/{ct.vmid}")
        deadline = time.monotonic() + 30
        while not locks() and time.monotonic() < deadline:
            time.sleep(0.005)
        return proc, pid

    def locks() -> list[Path]:  # written under a temporary name, then renamed
        return [p for p in (repo / "locks").iterdir() if "-tmp-" not in p.name]

    proc, pid = started_backup()
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    (stale,) = locks()
    assert len(listing()) == 1 and "lock:" not in ct.conf()
    time.sleep(1.1)
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc == 0, res.err
    assert "WARN" not in res.err
    assert len(listing()) == 2 and stale.exists()  # a backup does not need the repository alone
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    assert len(listing()) == 1 and not stale.exists() and not locks()
    # a backup of this host still running (stopped here): retention waits for it at the
    # repository's gate, in one line, and runs once the backup is done
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    proc, pid = started_backup()
    os.kill(pid, signal.SIGSTOP)
    try:
        prune = start_vzdump("prune", "offsite", "--prune-backups", "keep-last=1")
        time.sleep(2)
        assert prune.poll() is None and len(listing()) == 2
        assert vzdump("storage", "unlock", "offsite").rc == 0
        assert locks()  # not stale: kept
    finally:
        os.kill(pid, signal.SIGCONT)
    assert proc.wait(timeout=120) == 0
    _out, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, err
    waiting = "restic storage 'offsite': waiting for the backups using it"
    assert err.decode().splitlines().count(waiting) == 1, err
    assert len(listing()) == 2 and not locks()  # the one kept, and the backup it waited for
    # another host's backup: a lock only restic knows of, waited for, or one line when it stays
    other = subprocess.Popen(["restic", "backup", "--stdin", "--host", "other"],
                             env=restic_env(rhost.root), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not locks() and time.monotonic() < deadline:
            time.sleep(0.05)
        from shared import restic
        from shared.storage.config import load_config
        from shared.storage.resticplugin import ResticStorage

        store = load_config().get("offsite")
        assert isinstance(store, ResticStorage)
        with pytest.raises(LockError, match=r"^restic storage 'offsite': repository is locked$"):
            restic.run_exclusive(store.repo, ["tag", "--add", "x", "latest"], wait=1)
        prune = start_vzdump("prune", "offsite", "--prune-backups", "keep-last=1")
        time.sleep(2)
        assert prune.poll() is None
    finally:
        assert other.stdin is not None
        other.stdin.close()  # the other host's backup ends and drops its lock
        other.wait(timeout=60)
    _out, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, err
    assert vzdump("storage", "unlock", "offsite").rc == 0
    assert not locks()
    assert "no errors were found" in restic_cmd(rhost.root, "check")


def test_a_stale_exclusive_lock_does_not_fail_the_next_backups(rhost: Host) -> None:
    """A prune killed with the scheduler's service (TERM to its whole group) left restic's
    exclusive lock: every backup failed with 'repository is locked' until someone cleared it by
    hand. The backup removes stale locks (restic unlock never removes a live one) and runs."""
    add_storage(rhost.root)
    ct = rhost.create(start=True)
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    locks = rhost.root / "repo/locks"
    prune = subprocess.Popen(["restic", "prune"], env=restic_env(rhost.root),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not [p for p in locks.iterdir() if "-tmp-" not in p.name]:
            assert prune.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(prune.pid, signal.SIGSTOP)  # holding its exclusive lock, then killed
        os.kill(prune.pid, signal.SIGKILL)
    finally:
        prune.kill()
        prune.wait()
    assert list(locks.iterdir())  # left behind
    res = vzdump(str(ct.vmid), "--storage", "offsite")
    assert res.rc == 0, res.err
    assert "INFO: restic: the repository is locked - removing stale locks" in res.lines
    assert len(listing()) == 2 and not list(locks.iterdir())
    assert ct.running() and "lock:" not in ct.conf()


def _killed_prune_not_reaped(root: Path) -> subprocess.Popen[bytes]:
    """A restic prune killed while it holds its exclusive lock, and left unreaped: its lock is
    stale, but restic's unlock counts it as live while the zombie is there (a killed vzdump's
    restic until init reaps it)."""
    locks = root / "repo/locks"
    prune = subprocess.Popen(["restic", "prune"], env=restic_env(root),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while not [p for p in locks.iterdir() if "-tmp-" not in p.name]:
        assert prune.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(prune.pid, signal.SIGSTOP)
    os.kill(prune.pid, signal.SIGKILL)
    return prune


def test_a_lock_whose_killed_holder_is_reaped_late_is_cleared_then(rhost: Host) -> None:
    """One 'restic unlock' while the killed prune was still a zombie left its lock: the next
    backup failed with 'repository is locked', and the next prune waited for hours. Both now
    unlock again while they wait, and run once the holder is gone."""
    add_storage(rhost.root)
    ct = rhost.create()
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    time.sleep(1.1)  # snapshot times have one-second resolution
    for argv in ([str(ct.vmid), "--storage", "offsite"],
                 ["prune", "offsite", "--prune-backups", "keep-last=1"]):  # fmt: skip
        prune = _killed_prune_not_reaped(rhost.root)
        try:
            proc = start_vzdump(*argv)
            time.sleep(3)
            assert proc.poll() is None, proc.communicate()
        finally:
            prune.wait()  # reaped: the lock is stale now
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert len(listing()) == 1 and not list((rhost.root / "repo/locks").iterdir())


def test_scheduled_job_to_restic(rhost: Host) -> None:
    """A backup job with ``storage offsite`` runs like any other and applies the storage's
    retention (the storage's prune-backups, forget, then one prune)."""
    add_storage(rhost.root, "offsite", None, "--prune-backups", "keep-last=1")
    ct = rhost.create()
    ct.write("srv/file.txt", b"job")
    res = vzdump("job", "add", "nightly", "--schedule", "02:00", "--vmid", str(ct.vmid),
                 "--storage", "offsite", "--mode", "stop")  # fmt: skip
    assert res.rc == 0, res.err
    for _ in range(2):
        res = vzdump("job", "run", "nightly")
        assert res.rc == 0, res.err
        time.sleep(1.1)  # snapshot times have one-second resolution
    assert [r["vmid"] for r in listing()] == [ct.vmid]
    assert "no errors were found" in restic_cmd(rhost.root, "check")


def test_repository_disk_full(host: Host, tiny_fs: Path) -> None:
    """The repository's file system fills up mid-backup: one line, the CT as it was, no
    snapshot listed, and the repository still passes 'restic check'."""
    add_storage(host.root, "offsite", str(tiny_fs / "repo"))
    ct = host.create(start=True)
    ct.write("srv/big.bin", os.urandom(16 << 20))
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", "suspend")
    assert res.rc != 0
    errors = [ln for ln in res.lines if "Backup of VM" in ln and "failed" in ln]
    assert errors == [
        f"ERROR: Backup of VM {ct.vmid} failed - restic storage 'offsite': the repository's "
        "storage is full"
    ], res.err
    assert ct.running() and ct.freezer_state() == "THAWED" and "lock:" not in ct.conf()
    assert listing() == []
    env = {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": str(tiny_fs / "repo"),
           "RESTIC_PASSWORD_FILE": str(host.root / "etc/pve/priv/storage/offsite.pw"),
           "RESTIC_CACHE_DIR": str(host.root / "cache")}  # fmt: skip
    check = subprocess.run(["restic", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "no errors were found" in check.stdout, check.stderr


def test_retention_never_touches_another_hosts_backups(rhost: Host, tmp_path: Path) -> None:
    """Two hosts sharing a repository can both have a guest 123: each one's retention counts
    and removes only its own snapshots (it removed the other host's before)."""
    add_storage(rhost.root)
    ct = rhost.create()
    data = tmp_path / "other"
    (data / "etc/vzdump").mkdir(parents=True)
    (data / "etc/vzdump/pct.conf").write_text("arch: amd64\n")
    stamp = "2026-01-01T10:00:00Z"
    tags = f"vzdump,type=lxc,vmid={ct.vmid},time={stamp}"
    env = restic_env(rhost.root)
    subprocess.run(["restic", "backup", "--host", "otherhost", "--time", "2026-01-01 10:00:00",
                    "--tag", tags, "."], cwd=data, env={**env, "TZ": "UTC"},
                   check=True, capture_output=True)  # fmt: skip
    other = f"offsite:backup/ct/{ct.vmid}/{stamp}"
    assert {str(r["volid"]): r.get("host") for r in listing()} == {other: "otherhost"}
    for _ in range(2):
        res = vzdump(str(ct.vmid), "--storage", "offsite", "--prune-backups", "keep-last=1")
        assert res.rc == 0, res.err
    res = vzdump("prune", "offsite", "--prune-backups", "keep-last=1", "--output-format", "json")
    assert res.rc == 0 and [r["mark"] for r in json.loads(res.out)] == ["keep"], res.out
    rows = listing()
    assert [r.get("host") for r in rows].count("otherhost") == 1, rows
    assert len(rows) == 2 and other in [r["volid"] for r in rows], rows


# job-init runs just before the guest's second is chosen: the other storage's logs for this
# second and the next, as its backups a moment earlier would have left them
SIBLING_HOOK = """#!/bin/bash
[ "$1" = job-init ] || exit 0
now=$(date +%s)
for s in $now $((now + 1)); do
    echo "INFO: earlier" > "{logdir}/vzdump-lxc-{vmid}-$(date -d @$s +%Y_%m_%d-%H_%M_%S).log"
done
"""


def test_two_storages_on_one_repository_never_share_a_volume_id(rhost: Host) -> None:
    """A guest backed up to two storages of one repository within a second had one volume id
    for two snapshots: neither could be restored, and retention failed on it every time."""
    repo = add_storage(rhost.root)
    res = vzdump("storage", "add", "restic", "second", "--repository", str(repo),
                 "--password-file", str(rhost.root / "pw.txt"))  # fmt: skip
    assert res.rc == 0, res.err
    ct = rhost.create()
    logdir = rhost.root / "var/log/vzdump/restic/second"
    logdir.mkdir(parents=True, exist_ok=True)
    script = rhost.root / "sibling.sh"
    script.write_text(SIBLING_HOOK.format(logdir=logdir, vmid=ct.vmid))
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--storage", "offsite", "--script", str(script))
    assert res.rc == 0, res.err
    (row,) = listing()
    planted = sorted(p.name[len(f"vzdump-lxc-{ct.vmid}-") : -4] for p in logdir.iterdir())
    stamp = str(row["volid"]).rsplit("/", 1)[1]
    epoch = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    taken = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(epoch))  # as the log names
    assert len(planted) == 2 and taken > planted[-1]


@pytest.mark.parametrize("mode", ["stop", "snapshot"])
def test_a_subvolume_inside_the_volume_with_restic(host: Host, btrfs: Path, mode: str) -> None:
    """restic reads a stop-mode backup's tree across file systems (the container's mount
    points are in it): a btrfs subvolume inside the volume is in the backup, and no warning
    says otherwise. A snapshot of the volume holds it empty, and the warning says so."""
    add_storage(host.root)
    ct = host.create(rootfs="bt:0", start=mode == "snapshot")
    nested = ct.volume() / "var/lib/machines"
    nested.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(nested)], check=True)
    try:
        ct.write("var/lib/machines/image.raw", b"inside")
        res = vzdump(str(ct.vmid), "--storage", "offsite", "--mode", mode)
        assert res.rc == 0, res.err
        warned = any("'/var/lib/machines' is another file system" in ln for ln in res.lines)
        paths = {json.loads(line)["path"] for line in
                 restic_cmd(host.root, "ls", "--json", "latest").splitlines()[1:]}  # fmt: skip
        assert "/rootfs/var/lib/machines" in paths
        inside = "/rootfs/var/lib/machines/image.raw" in paths
        assert (inside, warned) == ((True, False) if mode == "stop" else (False, True))
    finally:
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(nested)], check=False)
