"""Where the LXC monitor keeps an unprivileged container's mount points while it runs.

When LXC builds an unprivileged container's mount namespace it copies the monitor's mounts
into a namespace owned by the container's user namespace, and the kernel locks every copied
mount there: nobody may unmount it until the container stops. So the pre-start hook mounts the
mount points under the root file system as usual (that makes their directories without
following symlinks, nested ones inside their parents), then moves each to a staging directory of
its own, and LXC binds them back with ``lxc.mount.entry`` from inside the new namespace. Those
binds are not locked, so ``pct set --delete mpN`` can unmount them live, exactly like hot-plugged
ones, which use the same staging directories.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..ctconfig.config import Config
from .beneath import path_parts

_FSTAB_ESCAPES = str.maketrans({"\\": "\\134", " ": "\\040", "\t": "\\011", "\n": "\\012"})


def stage_root(vmid: int) -> Path:
    return paths.lxc_dir(vmid) / ".hotplug"


def staging_dir(vmid: int, key: str) -> Path:
    return stage_root(vmid) / key


def staged(conf: Config) -> bool:
    """Whether the CT's mount points go through staging directories at start."""
    return conf.unprivileged


def mount_entries(conf: Config) -> list[str]:
    """The ``lxc.mount.entry`` values binding the staged mount points back, parents first."""
    if not staged(conf):
        return []
    from .mounts import ordered  # only when a config is generated

    mps = ordered([m for m in conf.mountpoints() if m.key != "rootfs"])
    return [
        f"{_fstab(str(staging_dir(conf.vmid, mp.key)))} {_fstab('/'.join(path_parts(mp.path)))}"
        " none bind 0 0"
        for mp in mps
    ]


def _fstab(text: str) -> str:
    return text.translate(_FSTAB_ESCAPES)


def stage_all(conf: Config, rootfs: Path) -> None:
    """Pre-start, in the monitor's namespace: move the mount points mounted below ``rootfs``
    to their staging directories, deepest first (nothing of the CT runs yet)."""
    if not staged(conf):
        return
    from ..storage import cmd
    from .mounts import ordered

    mps = ordered([m for m in conf.mountpoints() if m.key != "rootfs"])
    if mps:
        stage_root(conf.vmid).mkdir(parents=True, exist_ok=True)
        # LXC binds from inside the CT's user namespace, as a uid the host's umask may shut out
        stage_root(conf.vmid).chmod(0o711)
    for mp in reversed(mps):
        stage = staging_dir(conf.vmid, mp.key)
        stage.mkdir(exist_ok=True)
        cmd.run(["mount", "--move", str(rootfs.joinpath(*path_parts(mp.path))), str(stage)])


def unstage_all(vmid: int) -> list[str]:
    """Post-stop: unmount whatever is still staged; problems back as lines."""
    from ..errors import CommandError
    from .mounts import unmount_below

    try:
        return unmount_below(stage_root(vmid))
    except CommandError as err:
        return [str(err)]
