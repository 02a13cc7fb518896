"""Device passthrough (``devN``): device nodes in the container, at start and hot-plugged.

At start the pre-start hook mounts a tmpfs on ``<lxcpath>/<vmid>/passthrough`` in the LXC
monitor's private mount namespace and makes each node there (the host node's type and rdev,
``mode=`` else 0660, ``uid=``/``gid=`` mapped to host ids through the container's id map); the
generated config binds each one into the container's ``/dev`` (``lxc.mount.entry``). A tmpfs
because the node must live on a file system without ``nodev``, and it vanishes with the monitor.

Hot-plug does the same in the monitor's namespace, clones the node with ``open_tree``, enters the
container and ``move_mount``s it onto a file created there, then adds the cgroup rule live.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..archive.idmap import IdMapEntry, to_host
from ..errors import CtkitError
from ..storage import cmd
from . import nsenter
from .beneath import open_beneath, path_parts
from .cgroups import CGroup, Layout

DEFAULT_MODE = 0o660


@dataclass(frozen=True)
class Device:
    """One ``devN`` with the host node's facts."""

    path: str
    kind: str  # "c" | "b"
    rdev: int
    mode: int = DEFAULT_MODE
    uid: int = 0
    gid: int = 0
    deny_write: bool = False

    @property
    def rule(self) -> str:
        return f"{self.kind} {os.major(self.rdev)}:{os.minor(self.rdev)}"


def host_node(path: str) -> tuple[str, int]:
    """``(kind, rdev)`` of the host's device node at ``path``, refused as Proxmox does."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CtkitError(f"Device {path} does not exist") from None
    except OSError:
        raise CtkitError(f"Error accessing device {path}") from None
    if stat.S_ISBLK(st.st_mode):
        return "b", st.st_rdev
    if stat.S_ISCHR(st.st_mode):
        return "c", st.st_rdev
    raise CtkitError(f"{path} is not a device")


def device(options: Mapping[str, Any]) -> Device:
    """A parsed ``devN`` value as a :class:`Device`; the host node must exist."""
    path = str(options.get("path") or "")
    if not path.startswith("/dev/") or any(c.isspace() for c in path):
        raise CtkitError(f"invalid device path '{path}'")
    kind, rdev = host_node(path)
    mode = options.get("mode")
    return Device(
        path=path,
        kind=kind,
        rdev=rdev,
        mode=int(str(mode), 8) if mode is not None else DEFAULT_MODE,
        uid=int(options.get("uid") or 0),
        gid=int(options.get("gid") or 0),
        deny_write=bool(options.get("deny-write")),
    )


def passthrough_dir(vmid: int) -> Path:
    return paths.lxc_dir(vmid) / "passthrough"


def node_path(vmid: int, dev_path: str) -> Path:
    return passthrough_dir(vmid).joinpath(*path_parts(dev_path))


def mount_entry(vmid: int, dev_path: str) -> str:
    """The ``lxc.mount.entry`` value binding the prepared node into the container."""
    rel = "/".join(path_parts(dev_path))
    return f"{node_path(vmid, dev_path)} {rel} none bind,create=file 0 0"


def _host_id(entries: list[IdMapEntry], kind: str, ct_id: int) -> int:
    if not entries:
        return ct_id
    host = to_host(entries, kind, ct_id)
    if host is None:
        raise CtkitError(f"{kind}id {ct_id} is not mapped in the container")
    return host


def make_node(vmid: int, dev: Device, idmap: list[IdMapEntry]) -> Path:
    """Create (or re-create) the node for ``dev`` below the passthrough directory."""
    target = node_path(vmid, dev.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    kind = stat.S_IFBLK if dev.kind == "b" else stat.S_IFCHR
    try:
        os.mknod(target, kind | 0o600, dev.rdev)
    except OSError as err:
        raise CtkitError(f"failed to create device node {target}: {err.strerror}") from None
    try:
        os.chmod(target, dev.mode)  # the umask must not change the mode
        os.chown(target, _host_id(idmap, "u", dev.uid), _host_id(idmap, "g", dev.gid))
    except (OSError, CtkitError) as err:
        with contextlib.suppress(OSError):
            target.unlink()  # never a node of the wrong owner or mode left behind
        if isinstance(err, CtkitError):
            raise
        raise CtkitError(f"failed to create device node {target}: {err.strerror}") from None
    return target


def _mount_tmpfs(vmid: int) -> None:
    """The tmpfs the nodes live on, in the monitor's mount namespace: the host never sees
    them, and they vanish with the monitor."""
    top = passthrough_dir(vmid)
    top.mkdir(parents=True, exist_ok=True)
    cmd.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", str(top)])


def prepare_start(vmid: int, devices: list[Device], idmap: list[IdMapEntry]) -> None:
    """Pre-start hook: a fresh tmpfs with every device node (in the monitor's namespace)."""
    if not devices:
        return
    _mount_tmpfs(vmid)
    for dev in devices:
        make_node(vmid, dev, idmap)


def hotplug(vmid: int, dev: Device, idmap: list[IdMapEntry], pid: int, layout: Layout) -> None:
    """Add ``dev`` to the running container whose init is ``pid``: node, bind, cgroup rule."""
    monitor = nsenter.parent_pid(pid)
    unprivileged = bool(idmap)

    def work() -> None:
        nsenter.enter(monitor, userns=False)
        if not os.path.ismount(passthrough_dir(vmid)):
            # a CT started without devices has none: the node went onto the host's disk,
            # below 0755 directories, a working device node for every host user
            _mount_tmpfs(vmid)
        node = make_node(vmid, dev, idmap)
        tree = nsenter.open_tree(str(node))
        nsenter.enter(pid, userns=unprivileged)
        target = _target_file(dev.path)
        try:
            nsenter.move_mount(tree, target)
        finally:
            os.close(target)

    nsenter.run_forked(work, f"hot-plug of {dev.path}")
    allow_live(vmid, dev, layout)


def _target_file(dev_path: str) -> int:
    """An ``O_PATH`` fd of the file to mount on inside the container (created if missing);
    never through a symlink, never a directory."""
    parts = path_parts(dev_path)
    parent = open_beneath(Path("/"), "/".join(parts[:-1]), create=(0, 0))
    try:
        try:
            fd = os.open(parts[-1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)  # fmt: skip
            os.close(fd)
        except FileExistsError:
            pass
        fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        os.close(fd)
        raise CtkitError(f"{dev_path} in the container is a directory or a symlink")
    return fd


def allow_live(vmid: int, dev: Device, layout: Layout) -> None:
    """The cgroup device rule of a running CT: v1 ``devices.allow`` on its whole subtree
    (a child only gets what it asks for after its parent has it), v2 through LXC."""
    perms = "r" if dev.deny_write else "rw"
    if layout is Layout.V2:
        if dev.deny_write:
            _lxc_cgroup(vmid, "devices.deny", f"{dev.rule} w")
        _lxc_cgroup(vmid, "devices.allow", f"{dev.rule} {perms}")
        return
    top = CGroup(vmid, layout=layout).path("devices")
    groups = sorted((Path(d) for d, _s, _f in os.walk(top)), key=lambda p: len(p.parts))
    for group in groups:
        _write_rule(group / "devices.allow", f"{dev.rule} {perms}m")
        if dev.deny_write:
            _write_rule(group / "devices.deny", f"{dev.rule} w")


def _write_rule(target: Path, rule: str) -> None:
    try:
        target.write_text(rule)
    except OSError as err:
        if err.errno != errno.ENOENT:  # a group that went away meanwhile needs no rule
            raise CtkitError(f"unable to write '{rule}' to {target}: {err.strerror}") from None


def _lxc_cgroup(vmid: int, key: str, value: str) -> None:
    from . import lxcapi

    cmd.run([*lxcapi.lxc_base_argv("lxc-cgroup", vmid), key, value])
