"""Resource pools from Proxmox's user.cfg (read as parse_user_config reads it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared import paths, pools
from shared.errors import ConfigError, NotFoundError

USER_CFG = """\
user:root@pam:1:0:::root@example.com:::
pool:web:front ends:100,101;102:local:
pool:db::0200,101,x1::
pool:bad name:::
pool:a/b/c:nested:300::
group:admins:root@pam::
"""


def test_parse_like_proxmox() -> None:
    parsed = pools.parse_pools(USER_CFG)
    assert parsed.members == {
        "web": {100, 101, 102},
        "db": {200},  # numeric words count, 101 already belongs to web
        "a": set(),
        "a/b": set(),
        "a/b/c": {300},
    }
    assert parsed.warnings == [
        "user config - ignore duplicate vmid '101' in pool 'db'",
        "user config - ignore invalid vmid 'x1' in pool 'db'",
        "user config - ignore pool 'bad name' - invalid characters in pool name",
    ]


def test_pool_members_from_the_file(ctroot: Path) -> None:
    with pytest.raises(NotFoundError, match="pool 'web' does not exist"):
        pools.pool_members("web")
    paths.user_cfg().parent.mkdir(parents=True)
    paths.user_cfg().write_text(USER_CFG)
    warnings: list[str] = []
    assert pools.pool_members("web", warnings.append) == [100, 101, 102]
    assert len(warnings) == 3
    assert pools.pool_members("a") == []


def test_a_fifo_in_place_of_user_cfg_is_one_error(ctroot: Path) -> None:
    """Read as it was (open and read), it blocked the command for ever."""
    path = paths.user_cfg()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    with pytest.raises(ConfigError, match=r"^'.*user\.cfg' is not a regular file$"):
        pools.read_pools()
