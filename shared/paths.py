"""Every file-system location ctkit uses, derived from one root.

The root is ``CTKIT_ROOT`` when set, else ``/``; it is read on every call so that tests (and the
demo) can point a whole process at a scratch tree. The layout below the root is Proxmox's.
"""

from __future__ import annotations

import os
from pathlib import Path

_root: tuple[str, Path] = ("/", Path("/"))


def root() -> Path:
    global _root
    value = os.environ.get("CTKIT_ROOT") or "/"
    if value != _root[0]:  # a Path made once per value: every path ctkit uses asks for it
        _root = (value, Path(value))
    return _root[1]


def absolute_root() -> None:
    """Make a relative ``CTKIT_ROOT`` absolute, once at a command's start (its children and
    hooks inherit it). LXC finds a running container by its absolute path and runs the hooks
    elsewhere: under a relative root a running container showed as stopped, and a start failed
    in its pre-start hook."""
    value = os.environ.get("CTKIT_ROOT")
    if value and not os.path.isabs(value):
        os.environ["CTKIT_ROOT"] = os.path.abspath(value)


def under(rel: str) -> Path:
    """A path below the root; ``rel`` is written without a leading slash."""
    return root() / rel.lstrip("/")


def node_name() -> str:
    return os.uname().nodename.split(".")[0]


# /etc/pve and the container configs
def lxc_conf_dir() -> Path:
    return under("etc/pve/lxc")


def ct_conf(vmid: int) -> Path:
    return lxc_conf_dir() / f"{vmid}.conf"


def firewall_conf(vmid: int) -> Path:
    return under(f"etc/pve/firewall/{vmid}.fw")


def storage_cfg() -> Path:
    return under("etc/pve/storage.cfg")


def jobs_cfg() -> Path:
    return under("etc/pve/jobs.cfg")


def user_cfg() -> Path:
    """Proxmox's users, groups and resource pools (ctkit reads only the pools)."""
    return under("etc/pve/user.cfg")


def remotes_cfg() -> Path:
    """The SSH destinations ``pct migrate``/``remote-migrate`` may move containers to."""
    return under("etc/pve/ctkit-remotes.cfg")


def vzdump_conf() -> Path:
    return under("etc/vzdump.conf")


# pveam
def pveam_etc() -> Path:
    return under("etc/pveam")


def sources_cfg() -> Path:
    return pveam_etc() / "sources.cfg"


def pveam_gnupghome() -> Path:
    return pveam_etc() / "gnupg"


def aplinfo_dir() -> Path:
    return under("var/lib/pve-manager/apl-info")


def pveam_log() -> Path:
    return under("var/log/pveam.log")


# vzdump and jobs
def guests_log() -> Path:
    """The task log of ``pct startall`` / ``pct stopall`` (host boot and shutdown)."""
    return under("var/log/ctkit/guests.log")


def vzdump_log_dir() -> Path:
    return under("var/log/vzdump")


def vzdump_lock() -> Path:
    return under("run/vzdump.lock")


def vzdump_pid() -> Path:
    return under("run/vzdump.pid")


def vzsnap_mount(slot: int = 0) -> Path:
    """Where a backup mounts a guest's volumes; parallel backups use one per worker slot."""
    return under(f"mnt/vzsnap{slot}")


def jobs_state_dir() -> Path:
    return under("var/lib/pve-manager/jobs")


# runtime
def lock_dir() -> Path:
    return under("run/lock/lxc")


def config_lock(vmid: int) -> Path:
    return lock_dir() / f"pve-config-{vmid}.lock"


def lxc_path() -> Path:
    """LXC's lxcpath: generated configs, the rootfs mount point and LXC's own logs."""
    return under("var/lib/lxc")


def lxc_dir(vmid: int) -> Path:
    return lxc_path() / str(vmid)


def lxc_rootfs(vmid: int) -> Path:
    return lxc_dir(vmid) / "rootfs"


def run_dir() -> Path:
    return under("run/ctkit")


def owner_dir() -> Path:
    """Owner records of long operations (:mod:`shared.owner`): on disk, not in /run, because
    a host that crashes mid-backup leaves its lock and snapshot on disk too, and the next boot
    must find who made them."""
    return under("var/lib/ctkit/owners")


def migrate_records_dir() -> Path:
    """A migration's records of each side: on disk, as the owner records (a crashed host's
    half of a migration is undone at its next boot)."""
    return under("var/lib/ctkit/migrate")


def migrate_dir() -> Path:
    """Records of migrations in progress (outgoing and incoming), for recovery after a kill."""
    return run_dir() / "migrate"
