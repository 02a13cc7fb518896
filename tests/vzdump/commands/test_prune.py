"""``vzdump prune <storage>``: each entry's type as Proxmox reports it, and removal through the
engine's one pruning loop. Empty archive files; no container is needed."""

from __future__ import annotations

import json
from pathlib import Path

from shared.prune import parse_prune_backups
from vzdump.engine.retention import prune_storage

from .conftest import Cli

VMID = 900000321
STD = [f"vzdump-lxc-{VMID}-2024_03_0{d}-02_00_00.tar.zst" for d in (1, 2, 3)]
RENAMED = f"vzdump-lxc-{VMID}-before-upgrade.tar.zst"
FOREIGN = f"mine-{VMID}-copy.tar.zst"  # no vzdump name at all: type unknown


def fill(dump: Path) -> None:
    dump.mkdir(parents=True)
    for name in [*STD, RENAMED, FOREIGN]:
        (dump / name).write_bytes(b"")
    (dump / f"{STD[0]}.notes").write_text("old\n")


def test_json_reports_renamed_and_foreign_types(cli: Cli) -> None:
    fill(cli.dumpdir)
    res = cli.ok("prune", "local", "--vmid", str(VMID), "--prune-backups", "keep-last=1",
                 "--dry-run", "--output-format", "json")  # fmt: skip
    rows = {r["volid"].split("/", 1)[1]: (r["type"], r["mark"]) for r in json.loads(res.out)}
    assert rows == {
        STD[2]: ("lxc", "keep"),
        STD[1]: ("lxc", "remove"),
        STD[0]: ("lxc", "remove"),
        RENAMED: ("lxc", "renamed"),
        FOREIGN: ("unknown", "renamed"),
    }
    assert len(list(cli.dumpdir.iterdir())) == 6  # a dry run removes nothing


def test_prune_storage_removes_and_logs(cli: Cli) -> None:
    fill(cli.dumpdir)
    log: list[str] = []
    marked = prune_storage(
        "local", VMID, parse_prune_backups("keep-last=2"), dry_run=False, log=log.append
    )
    std = [(c.name.split("/", 1)[1], m) for c, m in marked if c.name.endswith(tuple(STD))]
    assert std == [(STD[2], "keep"), (STD[1], "keep"), (STD[0], "remove")]
    assert log == [f"removing backup 'local:backup/{STD[0]}'"]
    assert sorted(p.name for p in cli.dumpdir.iterdir()) == sorted([*STD[1:], RENAMED, FOREIGN])


def test_vmid_is_read_as_proxmox_reads_it(cli: Cli) -> None:
    fill(cli.dumpdir)
    res = cli.vzdump("prune", "local", "--vmid", "0900000321", "--dry-run")
    assert res.rc == 2 and "value does not look like a valid VM ID" in res.err
    assert len(list(cli.dumpdir.iterdir())) == 6


def test_a_storage_without_backup_content_is_refused(cli: Cli) -> None:
    """Storage 'img' shares local's path but holds images only: prune removed local's backups
    in that dump directory, where Proxmox refuses before marking anything."""
    fill(cli.dumpdir)
    cfg = cli.root / "etc/pve/storage.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "dir: local\n\tpath /var/lib/vz\n\tcontent backup\n\n"
        "dir: img\n\tpath /var/lib/vz\n\tcontent rootdir,images\n\tprune-backups keep-last=1\n"
    )
    for args in (["prune", "img"], ["prune", "img", "--vmid", str(VMID), "--dry-run"]):
        res = cli.vzdump(*args)
        assert (res.rc, res.err, res.out) == (9, "storage 'img' does not support backups\n", "")
    assert len(list(cli.dumpdir.iterdir())) == 6
