"""The restored container's config: the request, its layout, and the merge with the backup's
(pct.md §4.3).

Simple mode (no ``--rootfs``/``--mpN``) recreates every volume mount point of the backup with
its ``size=`` on ``--storage`` and appends bind/device mount points after the extraction;
advanced mode takes the command line's layout, created before extraction, so files land where
the new layout puts them. After extraction every backed-up key the new config does not set is
merged in (Proxmox's ``sanitize_and_merge``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from shared.ctconfig.config import Config
from shared.ctconfig.mountpoints import MountPoint, random_mac
from shared.ctconfig.options import NET_SCHEMA
from shared.ctconfig.pending import parse_values
from shared.errors import ConfigError, CtkitError
from shared.formats.types import FormatError
from shared.runtime.guestview import config_idmap
from shared.runtime.idcheck import check_subids

from .provision import check_rootdir_storages, complete_given_nets, take_template_flag

Log = Callable[[str], None]
# backed-up keys never copied into the restored config (pct.md §4.3.7; lock and pending added:
# a hand-made archive must not lock the new container or smuggle pending changes in)
EXCLUDED_KEYS = frozenset(
    {"digest", "rootfs", "snapshots", "unprivileged", "parent", "template", "lock", "snapstate"}
)
EXCLUDED_KEY_RE = re.compile(r"(?:mp|unused)\d+")
NET_KEY_RE = re.compile(r"net\d+")


@dataclass
class RestoreRequest:
    vmid: int
    archive: str  # backup volume id, path, or "-" for stdin
    params: dict[str, str] = field(default_factory=dict)  # config options, raw CLI text
    storage: str = "local"
    force: bool = False
    unique: bool = False
    unprivileged: bool | None = None  # None: as in the backup
    ignore_unpack_errors: bool = False
    bwlimit: int | None = None  # KiB/s
    start: bool = False
    is_root: bool = True  # bind/device mount points and raw lxc keys are root's
    trust_archive: bool = False  # keep what reaches outside the container (restore_trust)
    stdin: IO[bytes] | None = None  # the stream for "-" (default: sys.stdin)
    progress: bool = False  # progress display on stderr


@dataclass
class Plan:
    """The new config before allocation, and what is done with the backup's parts."""

    conf: Config
    backup: Config | None
    firewall: bytes | None = None
    delayed: dict[str, str] = field(default_factory=dict)  # bind/device mps, added at the end
    was_template: bool = False


def command_line_config(vmid: int, params: dict[str, str], unprivileged: bool | None) -> Config:
    """The validated command-line options (disk values still ``STORAGE:SIZE``)."""
    conf = Config(vmid)
    for key, (_value, text) in parse_values(params).items():
        conf.values[key] = text
    if unprivileged:
        conf.set("unprivileged", True)
    return conf


def plan_restore(
    conf: Config,
    backup: Config | None,
    req: RestoreRequest,
    log: Log,
    firewall: bytes | None = None,
) -> Plan:
    """Id mapping, raw lxc keys and mount points from the backup (pct.md §4.3.2-4)."""
    plan = Plan(conf, backup, firewall)
    plan.was_template = take_template_flag(conf)  # --template 1: converted once filled too
    if backup is not None:
        plan.was_template = plan.was_template or backup.is_template
        if req.is_root:
            conf.lxc = list(backup.lxc)  # may hold lxc.idmap: the extraction must use it
        if req.unprivileged is None and "unprivileged" in backup.values:
            conf.set_raw("unprivileged", backup.values["unprivileged"])
    try:
        if "rootfs" in conf.values:
            _check_given_layout(conf, req)
        else:
            plan.delayed = _backup_layout(conf, backup, req, log)
        complete_given_nets(conf, req.params)
    except FormatError as err:
        raise ConfigError(str(err)) from None
    check_rootdir_storages(conf)
    check_subids(conf.vmid, config_idmap(conf))
    return plan


def _check_given_layout(conf: Config, req: RestoreRequest) -> None:
    if not req.is_root and any(mp.type != "volume" for mp in conf.mountpoints()):
        raise CtkitError("Only root can pass arbitrary filesystem paths.")


def size_in_gib(size: int) -> str:
    """Bytes as the ``STORAGE:<GiB>`` number create takes (exact for whole MiB)."""
    return f"{size / (1 << 30):.10f}".rstrip("0").rstrip(".") or "0"


def _backup_layout(
    conf: Config, backup: Config | None, req: RestoreRequest, log: Log
) -> dict[str, str]:
    """Simple mode: the backup's volumes on ``--storage``; bind/device mps delayed."""
    mps = backup.mountpoints() if backup is not None else []
    if not any(mp.key == "rootfs" for mp in mps):
        raise CtkitError(
            "rootfs configuration could not be recovered, please check and specify manually!"
        )
    assert backup is not None
    delayed: dict[str, str] = {}
    for mp in mps:
        if mp.type == "volume":
            if mp.size is None:
                raise CtkitError(f"unable to detect disk size - please specify {mp.key} (size)")
            volume = f"{req.storage}:{size_in_gib(mp.size)}"
            conf.set(mp.key, mp.replace(volume=volume, size=None))
            continue
        if mp.key == "rootfs":
            raise CtkitError(
                f"restoring rootfs to {mp.type} mount is only possible by specifying "
                "-rootfs manually!"
            )
        if not req.is_root:
            raise CtkitError(f"restoring '{mp.key}' to {mp.type} mount is only possible for root")
        if mp.options.get("backup"):
            for line in _unsupported_lines(mp):
                log(line)
        delayed[mp.key] = backup.values[mp.key]
    return delayed


def _unsupported_lines(mp: MountPoint) -> list[str]:
    return [
        "WARNING - unsupported configuration!",
        f"backup was enabled for {mp.type} mount point {mp.key} ('{mp.path}')",
        "mount point configuration will be restored after archive extraction!",
        "contained files will be restored to wrong directory!",
    ]


def merge_config(
    conf: Config, backup: Config, *, restricted: bool = False, unique: bool = False, log: Log
) -> None:
    """Copy every backed-up key the new config does not set (Proxmox's sanitize_and_merge).

    Excluded: digest, rootfs, mpN, unusedN, snapshots, parent, unprivileged, template, lock.
    ``restricted`` (not root): raw lxc keys are only listed. ``unique``: new MACs.
    """
    for key in sorted(backup.values):
        if key in EXCLUDED_KEYS or EXCLUDED_KEY_RE.fullmatch(key) or key in conf.values:
            continue
        if restricted and key == "features" and not conf.unprivileged and backup.unprivileged:
            log("changing from unprivileged to privileged, skipping features")
            continue
        text = backup.values[key]
        if unique and NET_KEY_RE.fullmatch(key):
            text = with_new_mac(text)
        conf.set_raw(key, text)
    if restricted and backup.lxc:
        log("skipping custom lxc options, restore manually as root:")
        log("--------------------------------")
        for key, value in backup.lxc:
            log(f"{key}: {value}")
        log("--------------------------------")


def with_new_mac(text: str) -> str:
    try:
        net = NET_SCHEMA.parse(text)
    except FormatError:
        return text
    net["hwaddr"] = random_mac()
    return NET_SCHEMA.render(net)
