"""``pct remote check``: can this host migrate to a remote, and what does the remote offer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from shared.remote import ssh
from shared.remote.config import Remote
from shared.version import VERSION

from .target_info import TargetInfo, parse


def check(remote: Remote, vmid: int | None = None) -> TargetInfo:
    """Connect with the pinned key, ask the remote ctkit about itself; raise if unusable."""
    args = ["migrate-target", "info"]
    if vmid is not None:
        args += ["--vmid", str(vmid)]
    return host_info(remote, args)


def as_json(info: TargetInfo) -> dict[str, Any]:
    """The checked answer for ``--output-format json``, with this host's side added."""
    data = asdict(info)
    data["storages"] = {
        sid: {k: v for k, v in st.items() if st["exists"] or k == "exists"}
        for sid, st in data["storages"].items()
    }
    if info.vmid_free is None:
        del data["vmid_free"]
    return {**data, "compatible": info.compatible, "local_ctkit": VERSION}


def render(remote: Remote, info: TargetInfo) -> list[str]:
    lines = [f"remote '{remote.name}': ssh {remote.user}@{remote.host}:{remote.port} ok"]
    compat = "compatible" if info.compatible else "NOT compatible"
    lines.append(f"ctkit {info.ctkit} on node '{info.node}' ({compat})")
    for sid, st in sorted(info.storages.items()):
        avail = f"{st.avail >> 20} MiB free" if st.active else "inactive"
        lines.append(f"storage {sid}: {st.type or '?'}, {avail}")
    if info.vmid_free is not None:
        lines.append(f"vmid: {'free' if info.vmid_free else 'in use'}")
    return lines


def host_info(remote: Remote, args: list[str]) -> TargetInfo:
    """The remote's ``pct migrate-target info ...`` answer, checked (one line if it is none)."""
    return parse(remote.name, ssh.run_pct(remote, args))
