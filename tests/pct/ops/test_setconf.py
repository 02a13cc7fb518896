"""pct.ops.setconf: live limits of a container that stops while pct set applies them."""

from __future__ import annotations

import pytest

from pct.ops import setconf
from shared.ctconfig.config import Config
from shared.runtime.cgroups import CGroup


@pytest.mark.parametrize("key", ["memory", "cpulimit", "cpuunits", "cores"])
def test_the_limits_of_a_container_that_stopped_meanwhile_wait_for_its_next_start(
    vmid: int, key: str
) -> None:
    """pct set saw the container running, and it stopped (a guest reboot) before its cgroup
    was written: a FileNotFoundError traceback, and the change was lost. The config holds the
    value; the next start applies it."""
    conf = Config(vmid)
    conf.set(key, {"memory": "1024", "cpulimit": "1", "cpuunits": "200", "cores": "1"}[key])
    assert not CGroup(vmid).exists()
    assert setconf._apply_cgroup(conf, {key}) == {}
