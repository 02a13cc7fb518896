"""The host-dependent check of one option value, shared by ``pct create``, ``restore`` and ``set``.

Its own module so that create and restore do not import what only ``pct set`` needs (live
cgroups, recovery, hot-plug): every module a command imports is paid on every run.
"""

from __future__ import annotations

from typing import Any

from shared.ctconfig import unsupported
from shared.errors import CtkitError, ParamError
from shared.net.shaping import link_mtu
from shared.runtime import hookscript
from shared.storage.api import get_storage


def value_check(key: str, value: Any, *, new: bool = True) -> None:
    """Checks that need the host: new volumes must go to a rootdir storage, an interface's
    MTU may not exceed its bridge's, a hook script must be an executable snippet; ``new``
    values ctkit cannot honour are refused (one a restored config already has is kept, and
    warned about at start, as in a config copied from a Proxmox host)."""
    if key == "hookscript":
        hookscript.script_path(str(value))
        return
    problem = unsupported.value_problem(key, value) if new and isinstance(value, dict) else None
    if problem:
        raise ParamError({key: problem})
    if key.startswith("net") and isinstance(value, dict):
        _check_mtu(key, value)
    if not (key == "rootfs" or key.startswith("mp")) or not isinstance(value, dict):
        return
    volume = str(value.get("volume", ""))
    sid, sep, rest = volume.partition(":")
    if sep and rest.replace(".", "", 1).isdigit():
        store_ = get_storage(sid)
        if not store_.has_content("rootdir"):
            raise CtkitError(f"storage '{sid}' does not allow content type 'rootdir' (Container)")


def _check_mtu(key: str, net: dict[str, Any]) -> None:
    mtu, bridge = net.get("mtu"), net.get("bridge")
    if not mtu or not bridge:
        return
    bridge_mtu = link_mtu(str(bridge))
    if bridge_mtu is not None and int(mtu) > bridge_mtu:
        raise ParamError({key: f"MTU size '{mtu}' is bigger than bridge MTU '{bridge_mtu}'"})
