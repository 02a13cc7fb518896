"""Names vzdump writes under: never over an existing archive of the same second, never through
a symlink planted under a predictable name (issue 19: same-second names, item 3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.errors import AlreadyExistsError
from shared.formats.archivename import backup_basename
from vzdump.engine.target import unused_start

from .conftest import Host, archives, vzdump

VMID = 900000001


def plant(dumpdir: Path, vmid: int, first: int, count: int) -> dict[Path, bytes]:
    """Earlier runs' archives for the seconds ``first`` .. ``first + count - 1``."""
    planted = {}
    for sec in range(first, first + count):
        path = dumpdir / f"{backup_basename(vmid, sec)}.tar.zst"
        path.write_bytes(f"earlier run {sec}".encode())
        planted[path] = path.read_bytes()
    return planted


def test_a_taken_second_waits_for_the_next(tmp_path: Path) -> None:
    now = int(time.time())
    planted = plant(tmp_path, VMID, now, 1)
    when = unused_start(tmp_path, VMID)
    assert int(when) > now
    assert all(p.read_bytes() == data for p, data in planted.items())


def test_a_second_taken_in_a_directory_that_shares_the_names_waits_too(tmp_path: Path) -> None:
    """Two restic storages on one repository: a backup's volume id names the guest and the
    second, whichever storage wrote it."""
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    now = int(time.time())
    plant(other, VMID, now, 1)
    assert int(unused_start(mine, VMID, [other])) > now
    plant(other, VMID, now, 8)
    with pytest.raises(AlreadyExistsError, match=rf"'{other}/vzdump-lxc-{VMID}-"):
        unused_start(mine, VMID, [other])


def test_names_taken_for_seconds_are_refused(tmp_path: Path) -> None:
    now = int(time.time())
    planted = plant(tmp_path, VMID, now, 8)
    with pytest.raises(AlreadyExistsError, match="already exist"):
        unused_start(tmp_path, VMID)
    assert all(p.read_bytes() == data for p, data in planted.items())


# job-init runs just before the guest's name is chosen: plant archives for this second and the
# next under the names the run would pick, as a run a moment earlier would have left them
PLANT_HOOK = """#!/bin/bash
[ "$1" = job-init ] || exit 0
now=$(date +%s)
for s in $now $((now + 1)); do
    echo "earlier run" > "$DUMPDIR/vzdump-lxc-{vmid}-$(date -d @$s +%Y_%m_%d-%H_%M_%S).tar"
done
"""


@pytest.mark.lxc
def test_second_run_in_the_same_second_keeps_the_first(host: Host) -> None:
    ct = host.create()
    script = host.root / "plant.sh"
    script.write_text(PLANT_HOOK.format(vmid=ct.vmid))
    script.chmod(0o755)
    res = vzdump(str(ct.vmid), "--dumpdir", str(host.dumpdir), "--script", str(script))
    assert res.rc == 0, res.err
    found = archives(host.dumpdir, ct.vmid)
    earlier = [p for p in found if p.read_bytes() == b"earlier run\n"]
    assert len(earlier) == 2 and len(found) == 3, found


LINK_HOOK = """#!/bin/bash
# plant symlinks to host files under names vzdump is about to use
[ "$1" = job-init ] && ln -s "{victim_dir}" "{tmpbase}/vzdumptmp${{PPID}}_{vmid}"
[ "$1" = backup-end ] && ln -sf "{victim}" "$LOGFILE"
exit 0
"""


@pytest.mark.lxc
def test_planted_symlinks_are_not_followed(host: Host) -> None:
    """A symlink at the temp dir's name fails the guest with one line; one at the log copy's
    name is not written through (a warning says so)."""
    ct = host.create()
    victim_dir = host.root / "host-dir"
    victim_dir.mkdir()
    (victim_dir / "keep").write_text("precious")
    victim = host.root / "host-file"
    victim.write_text("precious")
    tmpbase = host.root / "tmp-base"
    tmpbase.mkdir()
    script = host.root / "links.sh"
    script.write_text(
        LINK_HOOK.format(victim_dir=victim_dir, tmpbase=tmpbase, vmid=ct.vmid, victim=victim)
    )
    script.chmod(0o755)
    args = ["--dumpdir", str(host.dumpdir), "--script", str(script)]
    res = vzdump(str(ct.vmid), *args, "--tmpdir", str(tmpbase))
    assert res.rc != 0
    err = next(ln for ln in res.lines if ln.startswith(f"ERROR: Backup of VM {ct.vmid} failed"))
    assert err.endswith("': it is a symbolic link"), err
    assert "refusing to use" in err and "vzdumptmp" in err
    assert (victim_dir / "keep").read_text() == "precious"
    assert sorted(p.name for p in victim_dir.iterdir()) == ["keep"]

    # without --tmpdir: the backup runs; at its end the log copy meets the planted link
    for link in tmpbase.iterdir():
        link.unlink()
    res = vzdump(str(ct.vmid), *args)
    assert res.rc == 0, res.err
    assert any(
        ln.startswith("WARN: unable to copy the log to ") and "it is a symbolic link" in ln
        for ln in res.lines
    ), res.err
    assert victim.read_text() == "precious"
