"""Suspend-mode archives written before the config members were kept apart from the data tree
(issue 19 item 0): they hold ``./etc/vzdump/pct.conf`` and ``pct.fw`` again in the data tree, as
hard links to themselves, which GNU tar cannot make. Restore skips them with a line, from a
volume id, a path and stdin alike.

``golden/vzdump-lxc-100-2025_06_01-00_00_00.tar.zst`` was made as vzdump made those archives:
the config members written into the directory that is also the data tree, then
``tar cpf - <vzdump's flags> --directory=T ./etc/vzdump/pct.conf ./etc/vzdump/pct.fw
--directory=T --no-anchored --anchored . | zstd`` (T holds a small Debian-like tree, with
``root/payload`` and its hard link ``root/payload-link``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.archive.members import list_members
from tests.pct.restore.conftest import Backups, volume_of

GOLDEN = Path(__file__).parent / "golden/vzdump-lxc-100-2025_06_01-00_00_00.tar.zst"
SKIPPED = [
    "skipping './etc/vzdump/pct.fw': a hard link to a config member",
    "skipping './etc/vzdump/pct.conf': a hard link to a config member",
]


def test_the_golden_archive_has_the_self_links() -> None:
    links = [(m.name, m.linkname) for m in list_members(GOLDEN) if m.type == b"1"]
    assert (b"./etc/vzdump/pct.conf", b"./etc/vzdump/pct.conf") in links
    assert (b"./etc/vzdump/pct.fw", b"./etc/vzdump/pct.fw") in links


@pytest.mark.parametrize("how", ["volid", "path", "stdin"])
def test_old_suspend_archive_restores(
    backups: Backups, vmid: int, mounted_volume: Callable[[Path], Path], how: str
) -> None:
    target = backups.dump / GOLDEN.name
    shutil.copyfile(GOLDEN, target)
    if how == "stdin":
        with open(target, "rb") as fh:
            conf = backups.restore(vmid, "-", stdin=fh, params={"rootfs": "local:0.0625"})
    else:
        archive = f"local:backup/{GOLDEN.name}" if how == "volid" else str(target)
        conf = backups.restore(vmid, archive)
    assert [line for line in backups.logs if line.startswith("skipping ")] == SKIPPED
    assert conf.get_raw("hostname") == "oldsuspend" and conf.get_raw("memory") == "512"
    fw = backups.root / f"etc/pve/firewall/{vmid}.fw"
    assert fw.read_text() == "[OPTIONS]\nenable: 1\n"
    rootfs = mounted_volume(volume_of(conf, "rootfs"))
    payload = rootfs / "root/payload"
    assert payload.read_text() == "written before the backup\n"
    assert payload.stat().st_nlink == 2 and (rootfs / "root/payload-link").samefile(payload)
    assert list((rootfs / "etc/vzdump").iterdir()) == []  # no config copies left in the root


def test_old_suspend_archive_on_the_command_line(backups: Backups, vmid: int) -> None:
    """The real ``pct restore`` from stdin: exit 0 and the skipped links on its console."""
    from tests.pct.restore.test_cli import pct

    proc = pct("restore", str(vmid), "-", "--rootfs", "local:0.0625", stdin=GOLDEN.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("skipping ")] == SKIPPED
