"""Storage/bridge maps and the config a migration target gets."""

from __future__ import annotations

import pytest

from pct.ops import migrate_plan as plan
from shared.ctconfig.config import parse_config
from shared.errors import ParamError


def test_maps_like_proxmox() -> None:
    m = plan.parse_map("local:fast,bt:fbt", "target-storage", "storage")
    assert (m("local"), m("bt"), m("other")) == ("fast", "fbt", "other")
    one = plan.parse_map("fbt", "target-storage", "storage")
    assert (one("local"), one("bt")) == ("fbt", "fbt")
    assert plan.parse_map("1", "target-storage", "storage")("x") == "x"
    mixed = plan.parse_map("vmbr0:vmbr1,vmbr9", "target-bridge", "bridge")
    assert (mixed("vmbr0"), mixed("br7")) == ("vmbr1", "vmbr9")
    for bad in ("a:b:c", "a:b,a:c", "x,y", ":b"):
        with pytest.raises(ParamError):
            plan.parse_map(bad, "target-storage", "storage")


def test_target_config_maps_volumes_and_bridges_and_drops_the_lock() -> None:
    conf = parse_config(
        "hostname: web\nlock: migrate\nrootfs: bt:100/subvol-100-disk-0.subvol,size=0T\n"
        "mp0: local:100/vm-100-disk-0.raw,mp=/data,backup=1,size=1G\n"
        "net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp\n"
        "unused0: local:100/vm-100-disk-1.raw\n",
        100,
    )
    volmap = {
        "bt:100/subvol-100-disk-0.subvol": "fbt:200/subvol-200-disk-0.subvol",
        "local:100/vm-100-disk-0.raw": "local:200/vm-200-disk-0.raw",
        "local:100/vm-100-disk-1.raw": "local:200/vm-200-disk-1.raw",
    }
    new = plan.target_config(conf, 200, volmap, {"net0": "vmbr9"})
    text = new.to_text()
    assert "lock" not in text and new.vmid == 200
    assert "rootfs: fbt:200/subvol-200-disk-0.subvol,size=0T\n" in text
    assert "mp0: local:200/vm-200-disk-0.raw,mp=/data,backup=1,size=1G\n" in text
    assert "net0: name=eth0,bridge=vmbr9,hwaddr=BC:24:11:00:00:01,ip=dhcp\n" in text
    assert "unused0: local:200/vm-200-disk-1.raw\n" in text
    assert conf.lock == "migrate"  # the source's config object is untouched
