"""``vzdump export``: a restic backup as a vzdump-lxc-<vmid>-<time>.tar.zst that the existing
archive restore takes; same first members and owners as the tar path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from tests.pct.restore.test_restic import BIN, fill, tree
from tests.vzdump.engine.conftest import CT, Host, names, run, vzdump
from tests.vzdump.engine.test_restic import add_storage, listing

pytestmark = pytest.mark.lxc


@pytest.fixture
def rhost(ctroot: Path, busybox_template: Path, new_vmid: Callable[[], int]) -> Iterator[Host]:
    from shared.testbed import stop_containers

    yield Host(ctroot, busybox_template, new_vmid)
    stop_containers(ctroot)


def test_export_restores_like_a_tar_backup(rhost: Host) -> None:
    add_storage(rhost.root)
    ct = rhost.create(unprivileged=True)
    fill(ct)
    before = tree(ct.volume(), 100000)
    assert vzdump(str(ct.vmid), "--storage", "offsite").rc == 0
    (volid,) = [str(r["volid"]) for r in listing() if r["vmid"] == ct.vmid]
    out = rhost.root / "exported"
    out.mkdir()
    res = vzdump("export", volid, "--dumpdir", str(out))
    assert res.rc == 0, res.err
    (archive,) = out.iterdir()
    assert archive.name.startswith(f"vzdump-lxc-{ct.vmid}-") and archive.name.endswith(".tar.zst")
    with archive.open("rb") as fh:  # a damaged export is caught by verify as zstd(1)'s is
        assert zstandard.get_frame_parameters(fh.read(18)).has_checksum
    members = names(archive)
    assert members[:3] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw", "./"]
    # owners in the container's id space, as the tar path stores them
    listing_text = subprocess.run(["tar", "--numeric-owner", "-tvf", str(archive),
                                   "./srv/data.bin"], capture_output=True, text=True,
                                  check=True).stdout  # fmt: skip
    assert " 1000/1000 " in listing_text
    new = rhost.new_vmid()
    res = run([str(BIN / "pct"), "restore", str(new), str(archive), "--storage", "local"])
    assert res.rc == 0, res.err
    assert tree(CT(new, rhost.root, True).volume(), 100000) == before
    # a second export refuses to overwrite; a bad volid is one line
    res = vzdump("export", volid, "--dumpdir", str(out))
    assert res.rc != 0 and "already exists" in res.err
    res = vzdump("export", volid[:-9] + "00:00:00Z", "--dumpdir", str(out))
    assert res.rc != 0 and len(res.lines) == 1 and "can't find backup" in res.err
    assert [p.name for p in out.iterdir()] == [archive.name]
    assert not [p for p in os.listdir(out) if p.endswith(".dat")]
