"""``pveam timer install|remove`` below a scratch root (units written, systemctl never run)."""

from __future__ import annotations

import configparser

from shared import paths
from tests.pveam.conftest import PVEAM, Pveam


def units(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_install_and_remove(pveam: Pveam) -> None:
    directory = paths.under("etc/systemd/system")
    res = pveam("timer", "install")
    assert res.code == 0, res
    service, timer = directory / "pveam-update.service", directory / "pveam-update.timer"
    assert res.out == f"wrote {service}\nwrote {timer}\n"
    assert "not enabling them" in res.err  # a scratch root is never the live system
    svc = units(service.read_text())
    assert svc["Service"]["ExecStart"] == f"{PVEAM} update"
    assert svc["Service"]["Type"] == "oneshot"
    assert svc["Service"]["Environment"] == f'"CTKIT_ROOT={paths.root()}"'
    assert svc["Unit"]["After"] == "network-online.target"
    assert svc["Unit"]["Wants"] == "network-online.target"
    tmr = units(timer.read_text())["Timer"]
    assert (tmr["OnCalendar"], tmr["Persistent"]) == ("daily", "true")
    assert tmr["RandomizedDelaySec"] == "5h"
    assert service.stat().st_mode & 0o777 == 0o644
    res = pveam("timer", "remove")
    assert (res.code, res.out) == (0, f"removed {service}\nremoved {timer}\n")
    assert not service.exists() and not timer.exists()
    assert pveam("timer", "remove").out == ""  # nothing left: still fine
