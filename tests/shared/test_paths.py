from __future__ import annotations

from pathlib import Path

import pytest

from shared import paths


def test_default_root_is_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTKIT_ROOT", raising=False)
    assert paths.ct_conf(100) == Path("/etc/pve/lxc/100.conf")


def test_the_root_follows_the_environment_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root's Path is kept between calls, but a changed CTKIT_ROOT is seen at once."""
    for value, expected in [
        ("/srv/a", "/srv/a"),
        ("/srv/b", "/srv/b"),
        ("", "/"),
        ("/srv/a", "/srv/a"),
    ]:
        monkeypatch.setenv("CTKIT_ROOT", value)
        assert paths.root() == Path(expected)
        assert paths.ct_conf(100) == Path(expected) / "etc/pve/lxc/100.conf"
    monkeypatch.delenv("CTKIT_ROOT")
    assert paths.root() == Path("/")


def test_everything_under_root(ctroot: Path) -> None:
    locations = [
        paths.ct_conf(101),
        paths.storage_cfg(),
        paths.jobs_cfg(),
        paths.vzdump_conf(),
        paths.aplinfo_dir(),
        paths.vzdump_log_dir(),
        paths.config_lock(101),
        paths.lxc_rootfs(101),
        paths.sources_cfg(),
        paths.pveam_gnupghome(),
        paths.jobs_state_dir(),
    ]
    for loc in locations:
        assert loc.is_relative_to(ctroot), loc
    assert paths.config_lock(101) == ctroot / "run/lock/lxc/pve-config-101.lock"
    assert paths.lxc_rootfs(101) == ctroot / "var/lib/lxc/101/rootfs"
