"""``pct remote check``: can this host migrate to a remote, and what does the remote offer."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import CtkitError
from shared.remote import ssh
from shared.remote.config import Remote
from shared.version import VERSION

from .migrate_target import PROTOCOL


def check(remote: Remote, vmid: int | None = None) -> dict[str, Any]:
    """Connect with the pinned key, ask the remote ctkit about itself; raise if unusable."""
    args = ["migrate-target", "info"]
    if vmid is not None:
        args += ["--vmid", str(vmid)]
    info = host_info(remote, args)
    info["compatible"] = info.get("protocol") == PROTOCOL
    info["local_ctkit"] = VERSION
    return info


def render(remote: Remote, info: dict[str, Any]) -> list[str]:
    lines = [f"remote '{remote.name}': ssh {remote.user}@{remote.host}:{remote.port} ok"]
    compat = "compatible" if info.get("compatible") else "NOT compatible"
    lines.append(f"ctkit {info.get('ctkit', '?')} on node '{info.get('node', '?')}' ({compat})")
    for sid, st in sorted(info.get("storages", {}).items()):
        if st.get("active"):
            avail = f"{int(st.get('avail', 0)) >> 20} MiB free"
        else:
            avail = "inactive"
        lines.append(f"storage {sid}: {st.get('type', '?')}, {avail}")
    if "vmid_free" in info:
        lines.append(f"vmid: {'free' if info['vmid_free'] else 'in use'}")
    return lines


def host_info(remote: Remote, args: list[str]) -> dict[str, Any]:
    """The remote's ``pct migrate-target info ...`` answer, or one line saying it gave none."""
    out = ssh.run_pct(remote, args)
    try:
        info = json.loads(out)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise CtkitError(f"remote '{remote.name}' did not answer like a ctkit host")
    return info
