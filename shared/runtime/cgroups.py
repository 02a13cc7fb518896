"""cgroup limits, live changes, freezing and figures, for both host layouts.

Hosts of this family run cgroup v1 controllers (with an empty unified hierarchy); current
Proxmox hosts run pure cgroup v2. The generated LXC config puts a container's limits on its outer
cgroup ``lxc/<vmid>`` (``lxc.cgroup.dir.container``), its processes live in ``lxc/<vmid>/ns``.
"""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class Layout(enum.Enum):
    V1 = "v1"
    V2 = "v2"


def detect_layout(root: Path = CGROUP_ROOT) -> Layout:
    """Pure v2 when the unified hierarchy is mounted at the top with controllers."""
    return Layout.V2 if (root / "cgroup.controllers").exists() else Layout.V1


@dataclass(frozen=True)
class Limits:
    memory: int  # MiB
    swap: int  # MiB
    cpulimit: float = 0.0  # CPUs, 0 = unlimited
    cpuunits: int | None = None
    cpuset: str | None = None


def memory_high(memory_mib: int) -> int:
    """Proxmox's soft limit: a little below the hard one (a fixed 128 MiB gap for big CTs)."""
    if memory_mib >= 16384:
        return (memory_mib - 128) << 20
    return memory_mib * 1024 * 1016


def clamp_cpuunits(units: int, layout: Layout) -> int:
    return min(max(units, 1), 10000) if layout is Layout.V2 else max(units, 2)


def lxc_keys(limits: Limits, layout: Layout, memsw: bool = True) -> list[tuple[str, str]]:
    """The ``lxc.cgroup[2].*`` lines for a container's limits, in the order Proxmox writes them."""
    mem = limits.memory << 20
    swap = limits.swap << 20
    keys: list[tuple[str, str]] = []
    if layout is Layout.V2:
        keys += [
            ("lxc.cgroup2.memory.max", str(mem)),
            ("lxc.cgroup2.memory.high", str(memory_high(limits.memory))),
            ("lxc.cgroup2.memory.swap.max", str(swap)),
        ]
        if limits.cpulimit > 0:
            keys.append(("lxc.cgroup2.cpu.max", f"{int(limits.cpulimit * PERIOD_US)} {PERIOD_US}"))
        if limits.cpuunits is not None:
            keys.append(("lxc.cgroup2.cpu.weight", str(clamp_cpuunits(limits.cpuunits, layout))))
        if limits.cpuset:
            keys.append(("lxc.cgroup2.cpuset.cpus", limits.cpuset))
        return keys
    keys.append(("lxc.cgroup.memory.limit_in_bytes", str(mem)))
    if memsw:
        keys.append(("lxc.cgroup.memory.memsw.limit_in_bytes", str(mem + swap)))
    if limits.cpulimit > 0:
        keys.append(("lxc.cgroup.cpu.cfs_period_us", str(PERIOD_US)))
        keys.append(("lxc.cgroup.cpu.cfs_quota_us", str(int(limits.cpulimit * PERIOD_US))))
    if limits.cpuunits is not None:
        keys.append(("lxc.cgroup.cpu.shares", str(clamp_cpuunits(limits.cpuunits, layout))))
    if limits.cpuset:
        keys.append(("lxc.cgroup.cpuset.cpus", limits.cpuset))
    return keys


def device_key(layout: Layout, action: str) -> str:
    """``lxc.cgroup[2].devices.allow|deny``."""
    prefix = "lxc.cgroup2" if layout is Layout.V2 else "lxc.cgroup"
    return f"{prefix}.devices.{action}"


def parse_cpulist(text: str) -> set[int]:
    """The kernel's CPU list format (``0-3,6``) as a set."""
    cpus: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        first, _sep, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def format_cpulist(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def memsw_supported(root: Path = CGROUP_ROOT) -> bool:
    return (root / "memory" / "memory.memsw.limit_in_bytes").exists()


class CGroup:
    """The outer cgroup ``lxc/<vmid>`` of one container."""

    def __init__(self, vmid: int, root: Path = CGROUP_ROOT, layout: Layout | None = None) -> None:
        self.vmid = vmid
        self.root = root
        self.layout = layout or detect_layout(root)

    def path(self, controller: str) -> Path:
        if self.layout is Layout.V2:
            return self.root / "lxc" / str(self.vmid)
        return self.root / controller / "lxc" / str(self.vmid)

    def read(self, controller: str, key: str) -> str:
        return (self.path(controller) / key).read_text().strip()

    def write(self, controller: str, key: str, value: str) -> None:
        self._write_path(self.path(controller) / key, value)

    def exists(self) -> bool:
        return self.path("memory").is_dir()

    # --- live limits ---------------------------------------------------------------------

    def set_memory(self, memory_mib: int, swap_mib: int) -> None:
        mem = memory_mib << 20
        if self.layout is Layout.V2:
            self.write("memory", "memory.swap.max", str(swap_mib << 20))
            self.write("memory", "memory.high", str(memory_high(memory_mib)))
            self.write("memory", "memory.max", str(mem))
            return
        # v1 requires memsw >= mem at every step: raise memsw first when growing
        old = int(self.read("memory", "memory.limit_in_bytes"))
        has_memsw = (self.path("memory") / "memory.memsw.limit_in_bytes").exists()
        order = ["memsw", "mem"] if mem >= old else ["mem", "memsw"]
        for which in order:
            if which == "mem":
                self.write("memory", "memory.limit_in_bytes", str(mem))
            elif has_memsw:
                total = mem + (swap_mib << 20)
                self.write("memory", "memory.memsw.limit_in_bytes", str(total))

    def set_cpulimit(self, cpulimit: float) -> None:
        if self.layout is Layout.V2:
            quota = str(int(cpulimit * PERIOD_US)) if cpulimit > 0 else "max"
            value = f"{quota} {PERIOD_US}"
            self.write("cpu", "cpu.max", value)
            return
        self.write("cpu", "cpu.cfs_period_us", str(PERIOD_US))
        v1_quota = int(cpulimit * PERIOD_US) if cpulimit > 0 else -1
        self.write("cpu", "cpu.cfs_quota_us", str(v1_quota))

    def set_cpuunits(self, units: int | None) -> None:
        """Live, as at start (``lxc_keys``): a value is clamped (0 is the lowest weight, not
        the default, which only an unset value gets)."""
        if self.layout is Layout.V2:
            value = clamp_cpuunits(100 if units is None else units, self.layout)
            self.write("cpu", "cpu.weight", str(value))
        else:
            value = clamp_cpuunits(1024 if units is None else units, self.layout)
            self.write("cpu", "cpu.shares", str(value))

    def set_cpuset(self, cpus: str) -> None:
        if self.layout is Layout.V2:
            self.write("cpuset", "cpuset.cpus", cpus)
            return
        # v1: every group must stay a subset of its parent (EBUSY otherwise) and children do not
        # follow their parent: widen the whole subtree top-down to old|new, then narrow it
        # bottom-up to new
        top = self.path("cpuset")
        groups = sorted((Path(d) for d, _s, _f in os.walk(top)), key=lambda p: len(p.parts))
        wanted = parse_cpulist(cpus)
        union = format_cpulist(parse_cpulist(self.read("cpuset", "cpuset.cpus")) | wanted)
        for group in groups:
            self._write_path(group / "cpuset.cpus", union)
        for group in reversed(groups):
            self._write_path(group / "cpuset.cpus", format_cpulist(wanted))

    def _write_path(self, target: Path, value: str) -> None:
        try:
            target.write_text(value)
        except OSError as err:
            msg = f"unable to set {target.name} of CT {self.vmid} to '{value}': {err.strerror}"
            raise StateError(msg) from None

    def cpuset_cpus(self) -> set[int] | None:
        """The CPUs the running CT may use (effective set), None when it has no cgroup."""
        try:
            return parse_cpulist(self.read("cpuset", "cpuset.effective_cpus"))
        except (OSError, ValueError):
            return None

    # --- freezing ----------------------------------------------------------------------------

    def is_frozen(self) -> bool:
        if self.layout is Layout.V2:
            events = self.read("freezer", "cgroup.events")
            return "frozen 1" in events.splitlines()
        return self.read("freezer", "freezer.state") == "FROZEN"

    def freeze(self, timeout: float = 30.0) -> None:
        if self.layout is Layout.V2:
            self.write("freezer", "cgroup.freeze", "1")
        else:
            self.write("freezer", "freezer.state", "FROZEN")
        deadline = time.monotonic() + timeout
        while not self.is_frozen():
            if time.monotonic() > deadline:
                self.thaw()
                raise StateError(f"unable to freeze CT {self.vmid} - timeout after {timeout:g}s")
            time.sleep(0.005)

    def thaw(self) -> None:
        if self.layout is Layout.V2:
            self.write("freezer", "cgroup.freeze", "0")
        else:
            self.write("freezer", "freezer.state", "THAWED")

    @contextlib.contextmanager
    def frozen(self, timeout: float = 30.0) -> Iterator[None]:
        """Freeze for the block; thawed on every exit path (also when freezing timed out).
        A CT that was already frozen (``pct suspend``) stays frozen: not ours to thaw."""
        if self.is_frozen():
            yield
            return
        try:
            self.freeze(timeout)
            yield
        finally:
            with contextlib.suppress(OSError, StateError):
                self.thaw()

    # --- figures -------------------------------------------------------------------------

    def memory_usage(self) -> int:
        key = "memory.current" if self.layout is Layout.V2 else "memory.usage_in_bytes"
        try:
            return int(self.read("memory", key))
        except (OSError, ValueError):
            return 0

    def cpu_usage_ns(self) -> int:
        try:
            if self.layout is Layout.V2:
                for line in self.read("cpu", "cpu.stat").splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) * 1000
                return 0
            return int(self.read("cpuacct", "cpuacct.usage"))
        except (OSError, ValueError):
            return 0

    def remove_stale(self) -> None:
        """Remove empty leftovers of an earlier failed start (LXC refuses to reuse them)."""
        for base in self._all_bases():
            for top in (base / "lxc" / str(self.vmid), base / "lxc.monitor" / str(self.vmid)):
                _rmdir_tree(top)

    def _all_bases(self) -> list[Path]:
        if self.layout is Layout.V2:
            return [self.root]
        return [p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()]


def _rmdir_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
