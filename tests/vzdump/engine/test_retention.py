"""Retention after a backup and ``vzdump prune`` (vzdump §5, §10 cases 24-27, 29, 37): every
keep option against hand-computed cases, protected and renamed backups, the pre-checks, and the
.log/.notes files removed with each pruned archive."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from shared.storage.resticplugin import ResticStorage

from .conftest import Host, archives, log_messages, logfile, vzdump

pytestmark = pytest.mark.lxc


def fake_backup(dump: Path, vmid: int | str, when: str, *, protected: bool = False) -> str:
    """An (empty) archive named for local time ``when`` with its .log and .notes."""
    stamp = dt.datetime.strptime(when, "%Y-%m-%d %H:%M").strftime("%Y_%m_%d-%H_%M_%S")
    name = f"vzdump-lxc-{vmid}-{stamp}.tar.zst"
    dump.mkdir(parents=True, exist_ok=True)
    (dump / name).write_bytes(b"")
    (dump / f"vzdump-lxc-{vmid}-{stamp}.log").write_text("old log\n")
    (dump / f"{name}.notes").write_text("old notes")
    if protected:
        (dump / f"{name}.protected").write_bytes(b"")
    return name


def local_dump(host: Host) -> Path:
    return host.root / "var/lib/vz/dump"


def test_keep_last_with_protected_and_renamed(host: Host) -> None:
    """Case 24 and 27: keep-last=2 keeps the new backup and the newest older one; the
    protected and the renamed backups are neither removed nor counted; each removed archive
    takes its .log and .notes along."""
    ct = host.create()
    dump = local_dump(host)
    old = [fake_backup(dump, ct.vmid, f"2020-01-0{d} 02:00") for d in (1, 2, 3)]
    protected = fake_backup(dump, ct.vmid, "2020-01-04 02:00", protected=True)
    renamed = f"vzdump-lxc-{ct.vmid}-before-upgrade.tar.zst"
    (dump / renamed).write_bytes(b"")
    res = vzdump(str(ct.vmid), "--compress", "zstd", "--prune-backups", "keep-last=2")
    assert res.rc == 0, res.err
    (new,) = [p for p in archives(dump, ct.vmid) if p.name not in (*old, protected, renamed)]
    msgs = log_messages(logfile(new))
    at = msgs.index("INFO: prune older backups with retention: keep-last=2")
    assert msgs[at + 1 : at + 4] == [
        f"INFO: removing backup 'local:backup/{old[0]}'",
        f"INFO: removing backup 'local:backup/{old[1]}'",
        "INFO: pruned 2 backup(s) not covered by keep-retention policy",
    ]
    left = {p.name for p in dump.iterdir()}
    assert {new.name, old[2], protected, renamed} == {p.name for p in archives(dump, ct.vmid)}
    assert f"{protected}.protected" in left and f"{old[2]}.notes" in left
    for gone in old[:2]:
        base = gone.removesuffix(".tar.zst")
        assert not {gone, f"{gone}.notes", f"{base}.log"} & left


def test_prune_in_a_dump_directory(host: Host) -> None:
    """§5.3 for a plain dumpdir: std names only, .protected honoured, `delete old backup`."""
    ct = host.create()
    older = fake_backup(host.dumpdir, ct.vmid, "2021-05-01 10:00")
    kept = fake_backup(host.dumpdir, ct.vmid, "2021-05-02 10:00", protected=True)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd",
                 "--prune-backups", "keep-last=1")  # fmt: skip
    assert res.rc == 0, res.err
    assert f"INFO: delete old backup '{host.dumpdir / older}'" in res.lines
    assert "INFO: pruned 1 backup(s) not covered by keep-retention policy" in res.lines
    left = [p.name for p in archives(host.dumpdir, ct.vmid)]
    assert len(left) == 2 and left[0] == kept and older not in left


def test_a_directory_named_like_an_archive_is_not_a_backup(host: Host) -> None:
    """In a dumpdir, prune tried to remove it and failed the guest's backup."""
    ct = host.create()
    odd = host.dumpdir / f"vzdump-lxc-{ct.vmid}-2021_05_01-10_00_00.tar.zst"
    odd.mkdir(parents=True)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd",
                 "--prune-backups", "keep-last=1")  # fmt: skip
    assert res.rc == 0, res.err
    assert odd.is_dir() and "delete old backup" not in res.err


@pytest.mark.parametrize("kind", ["dangling", "to a directory"])
def test_a_symlink_named_like_a_backup_is_not_one(host: Host, kind: str) -> None:
    """A dangling symlink named as the newest backup counted as one: keep-last=2 kept the new
    backup and the link, and removed both real backups (a storage's listing skips it)."""
    ct = host.create()
    real = [fake_backup(host.dumpdir, ct.vmid, f"2021-05-0{day} 10:00") for day in (1, 2)]
    ahead = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y_%m_%d-%H_%M_%S")
    link = host.dumpdir / f"vzdump-lxc-{ct.vmid}-{ahead}.tar.zst"
    elsewhere = host.root / "elsewhere"
    elsewhere.mkdir()
    link.symlink_to(host.root / "nonexistent" if kind == "dangling" else elsewhere)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd",
                 "--prune-backups", "keep-last=2")  # fmt: skip
    assert res.rc == 0, res.err
    left = {p.name for p in archives(host.dumpdir, ct.vmid)}
    assert real[1] in left and real[0] not in left and link.is_symlink()
    assert elsewhere.is_dir()


@pytest.mark.parametrize("where", ["storage", "dumpdir"])
def test_the_new_backup_is_never_removed_by_its_own_retention(host: Host, where: str) -> None:
    """Ranked by the times in their names, an archive named an hour ahead (a clock set back,
    the hour repeated in autumn) outranked the new one, and keep-last=1 deleted the backup
    just made while the job reported success."""
    ct = host.create()
    dump = local_dump(host) if where == "storage" else host.dumpdir
    ahead = (dt.datetime.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    future = fake_backup(dump, ct.vmid, ahead)
    target = ["--storage", "local"] if where == "storage" else ["--dumpdir", str(dump)]
    res = vzdump(str(ct.vmid), *target, "--compress", "zstd", "--prune-backups", "keep-last=1")
    assert res.rc == 0, res.err
    (new,) = [p for p in archives(dump, ct.vmid) if p.name != future]
    assert new.stat().st_size > 0
    made = f"local:backup/{new.name}" if where == "storage" else str(new)
    assert f"INFO: keeping the new backup '{made}' - another is named with a later time" in (
        res.lines
    )
    assert "INFO: pruned 0 backup(s)" in res.lines


def test_retention_parameters_and_precheck(host: Host) -> None:
    """Cases 25, 26 and 29: keep-all with others is a parameter error; all-zero means keep-all
    (no pruning, no limit); remove=0 with a reached limit fails before the log or the lock;
    precedence CLI > storage > vzdump.conf."""
    res = vzdump("100", "--prune-backups", "keep-all=1,keep-last=2")
    assert res.rc == 2 and "keep-all cannot be set together with other options." in res.err
    ct = host.create()
    dump = local_dump(host)
    for day in (1, 2):
        fake_backup(dump, ct.vmid, f"2022-02-0{day} 00:00")
    res = vzdump(str(ct.vmid), "--remove", "0", "--prune-backups", "keep-last=2")
    assert res.rc == 13
    assert res.lines[1] == (
        f"ERROR: Backup of VM {ct.vmid} failed - There is a max backup limit of 2 enforced by "
        "the target storage or the vzdump parameters. Either increase the limit or delete old "
        "backups."
    )
    assert len(list(dump.glob("*.log"))) == 2 and "lock" not in ct.conf()
    assert not (host.root / f"var/log/vzdump/lxc-{ct.vmid}.log").exists()
    res = vzdump(str(ct.vmid), "--prune-backups", "keep-last=0,keep-daily=0", "--remove", "0")
    assert res.rc == 0, res.err
    assert not any("prune" in ln for ln in res.lines[1:])
    # precedence: the storage's retention beats vzdump.conf; the CLI beats both
    host.vzdump_conf("prune-backups: keep-last=7\n")
    host.storage_cfg("dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,vztmpl,backup\n"
                     "\tprune-backups keep-hourly=24\n")  # fmt: skip
    res = vzdump(str(ct.vmid))
    assert res.rc == 0, res.err
    assert "INFO: prune older backups with retention: keep-hourly=24" in res.lines
    res = vzdump(str(ct.vmid), "--prune-backups", "keep-all=1")
    assert res.rc == 0 and not any("prune older" in ln for ln in res.lines)


# Newest first; 2024-03-10 is a Sunday, so A-E share ISO week 10.
TIMES = {
    "A": "2024-03-10 12:00",
    "B": "2024-03-10 11:30",
    "C": "2024-03-10 11:00",
    "D": "2024-03-09 23:00",
    "E": "2024-03-04 10:00",
    "F": "2024-02-15 10:00",
    "G": "2024-01-01 10:00",
    "H": "2023-06-01 10:00",
    "I": "2022-12-31 10:00",
}
CASES = [
    ("keep-last=3", "ABC"),
    ("keep-hourly=2", "AB"),
    ("keep-daily=2", "AD"),
    ("keep-weekly=2", "AF"),
    ("keep-monthly=3", "AFG"),
    ("keep-yearly=2", "AH"),
    # monthly: A and D cover March, so February and January are two new months
    ("keep-last=1,keep-daily=1,keep-monthly=2", "ADFG"),
]


def test_prune_command_marks_every_keep_option(host: Host) -> None:
    """§5.2 through `vzdump prune <storage> --vmid N --dry-run --output-format json`: each
    option alone and combined; protected and renamed entries (and other VMIDs, and the
    non-standard `vzdump-lxc-99-…`) are never marked for removal (case 37)."""
    dump = local_dump(host)
    vmid = 900000123
    names = {key: fake_backup(dump, vmid, when) for key, when in TIMES.items()}
    protected = fake_backup(dump, vmid, "2024-03-11 00:00", protected=True)
    renamed = f"vzdump-lxc-{vmid}-manual.tar.zst"
    (dump / renamed).write_bytes(b"")
    odd = fake_backup(dump, 99, "2024-03-10 12:00")
    for keep, expected in CASES:
        res = vzdump("prune", "local", "--vmid", str(vmid), "--prune-backups", keep,
                     "--dry-run", "--output-format", "json")  # fmt: skip
        assert res.rc == 0, res.err
        marks = {row["volid"].split("/", 1)[1]: row["mark"] for row in json.loads(res.out)}
        want = {names[k]: "keep" if k in expected else "remove" for k in TIMES}
        assert marks == {**want, protected: "protected", renamed: "renamed"}, keep
    res = vzdump("prune", "local", "--prune-backups", "keep-last=1", "--dry-run",
                 "--output-format", "json")  # fmt: skip
    marks = {row["volid"].split("/", 1)[1]: row["mark"] for row in json.loads(res.out)}
    assert marks[odd] == "renamed"
    # for real: the removed archives go with their .log and .notes
    res = vzdump("prune", "local", "--vmid", str(vmid), "--prune-backups", "keep-yearly=2")
    assert res.rc == 0, res.err
    lines = res.out.decode().splitlines()
    assert lines[0].split() == ["Backup", "Backup-ID", "Keep/Remove"]
    assert len(lines) == 1 + len(TIMES) + 2
    left = {p.name for p in dump.iterdir()}
    for key, name in names.items():
        assert (name in left) is (key in "AH")
        assert (f"{name}.notes" in left) is (key in "AH")
    assert protected in left and renamed in left and odd in left


def test_restic_retention_removes_the_snapshot_it_marked(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """Another host of a shared repository backed up its guest 900000123 in the same second
    as this node: this node's retention removes its own snapshot of that second (it failed,
    'error pruning backups', for every later run) and never the other host's."""
    from shared import paths
    from shared.storage import resticbackups
    from tests.shared.storage.test_resticbackups import backup
    from vzdump.engine import retention

    source = tmp_path / "src"
    source.mkdir()
    for host, when in [
        ("otherhost", "2026-01-01 10:00:00"),
        (paths.node_name(), "2026-01-01 10:00:00"),
        (paths.node_name(), "2026-01-02 10:00:00"),
    ]:
        stamp = when.replace(" ", "T") + "Z"
        backup(restic_store, source, f"vzdump,type=lxc,vmid=900000123,time={stamp}", when,
               host=host)  # fmt: skip
    log: list[str] = []
    marked = retention.prune_storage(
        "offsite", 900000123, {"keep-last": 1}, dry_run=False, log=log.append
    )
    assert [(c.name, m) for c, m in marked] == [
        ("offsite:backup/ct/900000123/2026-01-02T10:00:00Z", "keep"),
        ("offsite:backup/ct/900000123/2026-01-01T10:00:00Z", "remove"),
    ]
    left = [(s.host, s.volname()) for s in resticbackups.snapshots(restic_store)]
    assert sorted(left) == sorted(
        [
            (paths.node_name(), "backup/ct/900000123/2026-01-02T10:00:00Z"),
            ("otherhost", "backup/ct/900000123/2026-01-01T10:00:00Z"),
        ]
    ), log


def test_a_storage_retention_that_does_not_parse_fails_the_job(host: Host) -> None:
    """Proxmox drops such a line with a warning, and the backup pruned by vzdump.conf's
    keep-last=1 instead: every backup the storage's keep-last=30 was meant to keep went."""
    ct = host.create()
    dump = local_dump(host)
    old = [fake_backup(dump, ct.vmid, f"2020-01-0{d} 02:00") for d in (1, 2, 3)]
    host.storage_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent rootdir,images,backup,vztmpl\n"
        "\tprune-backups keep-last=30,keep-dayly=7\n"
    )
    host.vzdump_conf("prune-backups: keep-last=1\n")
    why = "unable to read the retention of storage 'local' - 'prune-backups': invalid format"
    for args in ([str(ct.vmid), "--compress", "zstd"], ["prune", "local"]):
        res = vzdump(*args)
        assert res.rc == 12 and why in res.err, res.err
        assert [p.name for p in archives(dump, ct.vmid)] == old
    # a retention given on the command line needs none of the storage's
    res = vzdump("prune", "local", "--prune-backups", "keep-last=3")
    assert res.rc == 0 and [p.name for p in archives(dump, ct.vmid)] == old, res.err


HOLD_BACKUP_RECORD = """
import sys, time
from shared import owner
owner.claim(int(sys.argv[1]), owner.BACKUP_OP)
print("held", flush=True)
time.sleep(120)
"""


def test_prune_leaves_what_a_running_backup_makes_alone(host: Host) -> None:
    """What a running backup makes can be listed before it is known to be complete (restic
    saves a failed backup's snapshot and forgets it afterwards): counted as the newest, it
    made a prune remove the last complete backup. Older backups of that guest still count."""
    import subprocess
    import sys

    from tests.midway import CHECKOUT

    dump = local_dump(host)
    busy, idle = 900000101, 900000102
    old = [fake_backup(dump, busy, f"2020-01-0{d} 02:00") for d in (1, 2, 3)]
    gone = [fake_backup(dump, idle, f"2020-01-0{d} 02:00") for d in (1, 2)]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_BACKUP_RECORD, str(busy)],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        soon = dt.datetime.now() + dt.timedelta(minutes=1)  # named after its start
        making = fake_backup(dump, busy, soon.strftime("%Y-%m-%d %H:%M"))
        res = vzdump("prune", "local", "--prune-backups", "keep-last=1")
        assert res.rc == 0, res.err
        assert f"leaving 'local:backup/{making}' alone - a backup of CT {busy} is running" in (
            res.err
        )
        assert [p.name for p in archives(dump, busy)] == [old[2], making]
        assert [p.name for p in archives(dump, idle)] == gone[1:]
    finally:
        holder.kill()
        holder.wait()
    res = vzdump("prune", "local", "--prune-backups", "keep-last=1")  # its owner is gone
    assert res.rc == 0 and [p.name for p in archives(dump, busy)] == [making], res.err


def _pruned_twice(storage: str, vmid: int) -> list[str]:
    """Two prunes that marked the same three backups (keep-last=1): the other one removes
    first, then this one; its log lines."""
    from shared import prune
    from vzdump.engine import retention

    cands = retention.candidates_on_storage(storage, vmid)
    mine = prune.mark_group(cands, {"keep-last": 1})
    theirs = prune.mark_group(cands, {"keep-last": 1})
    assert retention.remove_marked(theirs, storage, lambda _msg: None) == 2
    log: list[str] = []
    assert retention.remove_marked(mine, storage, log.append) == 2
    return log


def test_a_backup_another_prune_removed_first_is_done(ctroot: Path) -> None:
    """Two prunes of a guest at once mark the same backups: the one that came second found
    them gone, logged 'can't find file' for each and failed (a nightly backup whose retention
    it was was reported failed). Gone is done, as in Proxmox's archive_remove."""
    dump = ctroot / "var/lib/vz/dump"
    names = [fake_backup(dump, 900000124, f"2024-01-0{day} 02:00") for day in (1, 2, 3)]
    log = _pruned_twice("local", 900000124)
    assert log == [f"removing backup 'local:backup/{n}'" for n in names[:2]]
    assert sorted(p.name for p in dump.iterdir()) == sorted(
        [names[2], f"{names[2]}.notes", names[2].replace(".tar.zst", ".log")]
    )


def test_a_restic_backup_another_prune_forgot_first_is_done(
    restic_store: ResticStorage, tmp_path: Path
) -> None:
    """The same on a restic storage: 'can't find backup' failed the second prune."""
    from shared.storage import resticbackups
    from tests.shared.storage.test_resticbackups import backup

    source = tmp_path / "src"
    source.mkdir()
    for day in (1, 2, 3):
        stamp = f"2026-01-0{day}T10:00:00Z"
        backup(restic_store, source, f"vzdump,type=lxc,vmid=900000124,time={stamp}",
               f"2026-01-0{day} 10:00:00")  # fmt: skip
    log = _pruned_twice("offsite", 900000124)
    assert not [line for line in log if "error" in line], log
    left = [s.volname() for s in resticbackups.snapshots(restic_store)]
    assert left == ["backup/ct/900000124/2026-01-03T10:00:00Z"]


@pytest.mark.parametrize("odd", ["fifo", "notes directory", "dangling protected link"])
def test_odd_entries_named_like_a_backup_never_fail_a_prune(ctroot: Path, odd: str) -> None:
    """A FIFO named as an archive was marked, then 'can't find file'; a directory at the
    notes' name failed the removal of an archive that was gone ('Is a directory'); a dangling
    .protected link listed as unprotected was marked, then refused. Each failed every later
    backup of the guest."""
    from vzdump.engine import retention

    dump = ctroot / "var/lib/vz/dump"
    newest = fake_backup(dump, 900000125, "2024-01-02 02:00")
    older = "vzdump-lxc-900000125-2024_01_01-02_00_00.tar.zst"
    if odd == "fifo":
        os.mkfifo(dump / older)
    else:
        (dump / older).write_bytes(b"")
    if odd == "notes directory":
        (dump / f"{older}.notes").mkdir()
    if odd == "dangling protected link":
        (dump / f"{older}.protected").symlink_to(ctroot / "nonexistent")
    log: list[str] = []
    marked = retention.prune_storage(
        "local", 900000125, {"keep-last": 1}, dry_run=False, log=log.append
    )
    marks = {c.name.split("/", 1)[1]: m for c, m in marked}
    volid = f"local:backup/{older}"
    if odd == "fifo":
        assert marks == {newest: "keep"} and log == [] and (dump / older).is_fifo()
    elif odd == "notes directory":
        assert marks == {newest: "keep", older: "remove"}
        assert log == [
            f"removing backup '{volid}'",
            f"WARN: Removing notes file '{dump / older}.notes' failed: Is a directory",
        ]
        assert not (dump / older).exists()
    else:
        assert marks == {newest: "keep", older: "protected"} and log == []
        assert (dump / older).exists() and not (ctroot / "nonexistent").exists()


def test_a_name_with_year_0001_is_a_renamed_backup(ctroot: Path) -> None:
    """Its time cannot be placed: prune ended in a traceback ('year 0 is out of range') and
    every later backup of the guest with retention failed. Kept and not counted, as a name
    with an impossible date."""
    from vzdump.engine import retention

    dump = ctroot / "var/lib/vz/dump"
    newest = fake_backup(dump, 900000126, "2024-01-02 02:00")
    ancient = "vzdump-lxc-900000126-0001_01_01-00_00_00.tar.zst"
    (dump / ancient).write_bytes(b"")
    log: list[str] = []
    marked = retention.prune_storage(
        "local", 900000126, {"keep-last": 1}, dry_run=False, log=log.append
    )
    assert {c.name.split("/", 1)[1]: m for c, m in marked} == {
        newest: "keep",
        ancient: "renamed",
    }
    assert log == [] and (dump / ancient).exists()
