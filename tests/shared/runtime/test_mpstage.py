"""The ``lxc.mount.entry`` lines that bind an unprivileged CT's staged mount points back."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.ctconfig.config import parse_config
from shared.runtime.mpstage import mount_entries, staging_dir

CONF = """\
arch: amd64
memory: 512
mp0: /srv/a b,mp=/with space
mp1: local:100/vm-100-disk-2.raw,mp=/data/inner,size=1G
mp2: local:100/vm-100-disk-1.raw,mp=/data/,size=1G
ostype: debian
rootfs: local:100/subvol-100-disk-0.subvol,size=0T
"""


def test_parents_first_escaped_as_in_fstab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTKIT_ROOT", str(tmp_path))
    conf = parse_config((CONF + "unprivileged: 1\n").encode(), 100)
    stage = str(staging_dir(100, "")).rstrip("/")
    assert mount_entries(conf) == [
        f"{stage}/mp2 data none bind 0 0",
        f"{stage}/mp0 with\\040space none bind 0 0",
        f"{stage}/mp1 data/inner none bind 0 0",
    ]


def test_privileged_cts_keep_their_mounts_in_place() -> None:
    assert mount_entries(parse_config(CONF.encode(), 100)) == []
