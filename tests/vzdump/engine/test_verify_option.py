"""``vzdump --verify``: the new archive is read back end to end after the backup; a damaged one
fails the guest (and the job) and the failure is kept beside the archive."""

from __future__ import annotations

import json

import pytest

from shared.backups.sidecar import sidecar_path

from .conftest import Host, log_messages, logfile, only_archive, vzdump

pytestmark = pytest.mark.lxc


def test_verify_after_backup(host: Host) -> None:
    """A verified backup is followed by the retention: the older archive goes after it."""
    ct = host.create()
    for _ in range(2):
        res = vzdump(str(ct.vmid), "--storage", "local", "--compress", "zstd", "--verify",
                     "--prune-backups", "keep-last=1")  # fmt: skip
        assert res.rc == 0, res.err
    archive = only_archive(host.root / "var/lib/vz/dump", ct.vmid)
    msgs = log_messages(logfile(archive))
    assert "INFO: verifying archive" in msgs
    verified = next(i for i, m in enumerate(msgs) if m.startswith("INFO: archive verified: "))
    assert msgs[verified + 1] == "INFO: prune older backups with retention: keep-last=1", msgs
    assert json.loads(sidecar_path(archive).read_text())["verify"]["state"] == "ok"


def test_damaged_archive_fails_the_job(host: Host) -> None:
    """A hook cuts the archive at backup-end (before the verification): the guest fails, and
    the retention it asked for does not run, so the older good archive stays."""
    ct = host.create()
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd")
    assert res.rc == 0, res.err
    good = only_archive(host.dumpdir, ct.vmid)
    script = host.root / "cut.sh"
    script.write_text('#!/bin/sh\n[ "$1" = backup-end ] && truncate -s -700 "$TARGET"\nexit 0\n')
    script.chmod(0o755)
    res = vzdump(
        str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd", "--verify",
        "--script", str(script), "--prune-backups", "keep-last=1",
    )  # fmt: skip
    assert res.rc != 0
    assert any("unexpected end of archive" in line for line in res.lines), res.err
    assert good.exists(), res.err
    archives = sorted(host.dumpdir.glob(f"vzdump-lxc-{ct.vmid}-*.tar.zst"))
    assert len(archives) == 2 and good in archives
    damaged = next(a for a in archives if a != good)
    assert json.loads(sidecar_path(damaged).read_text())["verify"]["state"] == "failed"
    # the next night's retention: the damaged archive holds no keep slot, and it stays
    res = vzdump(
        str(ct.vmid), "--dumpdir", str(host.dumpdir), "--compress", "zstd", "--verify",
        "--prune-backups", "keep-last=2",
    )  # fmt: skip
    assert res.rc == 0, res.err
    after = sorted(host.dumpdir.glob(f"vzdump-lxc-{ct.vmid}-*.tar.zst"))
    assert len(after) == 3 and good in after and damaged in after, res.err
