"""cgroup limits: the math (spec pct.md §3, §9 cases 14/15) and the files a live change writes.

The live-change tests run against a scratch directory laid out like /sys/fs/cgroup (plain files
do not enforce the kernel's ordering rules; the real cgroups are exercised in tests/pct).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import StateError
from shared.runtime.cgroups import (
    CGroup,
    Layout,
    Limits,
    clamp_cpuunits,
    detect_layout,
    device_key,
    format_cpulist,
    lxc_keys,
    memory_high,
    memsw_supported,
    parse_cpulist,
)

VMID = 100


def test_case_14_memory_1024_mib() -> None:
    keys = dict(lxc_keys(Limits(memory=1024, swap=512), Layout.V2))
    assert keys["lxc.cgroup2.memory.max"] == "1073741824"
    assert keys["lxc.cgroup2.memory.high"] == "1065353216"
    assert keys["lxc.cgroup2.memory.swap.max"] == "536870912"


def test_case_15_cpulimit_half_a_cpu() -> None:
    keys = dict(lxc_keys(Limits(memory=512, swap=0, cpulimit=0.5), Layout.V2))
    assert keys["lxc.cgroup2.cpu.max"] == "50000 100000"
    v1 = dict(lxc_keys(Limits(memory=512, swap=0, cpulimit=0.5), Layout.V1))
    assert v1["lxc.cgroup.cpu.cfs_period_us"] == "100000"
    assert v1["lxc.cgroup.cpu.cfs_quota_us"] == "50000"


def test_memory_high_keeps_a_fixed_gap_for_big_containers() -> None:
    assert memory_high(512) == 532676608  # spec example: 512 MiB
    assert memory_high(16383) == 16383 * 1024 * 1016
    assert memory_high(16384) == (16384 - 128) << 20


def test_v1_keys_combine_memory_and_swap() -> None:
    keys = lxc_keys(Limits(memory=512, swap=256, cpuunits=1024), Layout.V1)
    assert keys == [
        ("lxc.cgroup.memory.limit_in_bytes", "536870912"),
        ("lxc.cgroup.memory.memsw.limit_in_bytes", "805306368"),
        ("lxc.cgroup.cpu.shares", "1024"),
    ]
    no_memsw = lxc_keys(Limits(memory=512, swap=256), Layout.V1, memsw=False)
    assert no_memsw == [("lxc.cgroup.memory.limit_in_bytes", "536870912")]


def test_no_cpu_keys_without_limits() -> None:
    keys = dict(lxc_keys(Limits(memory=512, swap=512), Layout.V2))
    assert not [k for k in keys if ".cpu" in k]


def test_cpuunits_clamping() -> None:
    assert clamp_cpuunits(500000, Layout.V2) == 10000
    assert clamp_cpuunits(0, Layout.V2) == 1
    assert clamp_cpuunits(500000, Layout.V1) == 500000
    assert clamp_cpuunits(1, Layout.V1) == 2


def test_device_keys() -> None:
    assert device_key(Layout.V2, "allow") == "lxc.cgroup2.devices.allow"
    assert device_key(Layout.V1, "deny") == "lxc.cgroup.devices.deny"


def test_cpulists() -> None:
    assert parse_cpulist("0-3,6,8-9\n") == {0, 1, 2, 3, 6, 8, 9}
    assert parse_cpulist("") == set()
    assert format_cpulist({3, 1, 2}) == "1,2,3"


def test_layout_detection(tmp_path: Path) -> None:
    assert detect_layout(tmp_path) is Layout.V1
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert detect_layout(tmp_path) is Layout.V2


def _v2_group(root: Path) -> Path:
    (root / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    group = root / "lxc" / str(VMID)
    group.mkdir(parents=True)
    for name in ("memory.max", "memory.high", "memory.swap.max", "cpu.max", "cpu.weight"):
        (group / name).write_text("max\n")
    return group


def _v1_group(root: Path) -> dict[str, Path]:
    groups = {}
    for ctrl in ("memory", "cpu", "cpuset"):
        groups[ctrl] = root / ctrl / "lxc" / str(VMID)
        (groups[ctrl] / "ns").mkdir(parents=True)
    mem = groups["memory"]
    (mem / "memory.limit_in_bytes").write_text("536870912\n")
    (mem / "memory.memsw.limit_in_bytes").write_text("1073741824\n")
    for group in (groups["cpuset"], groups["cpuset"] / "ns"):
        (group / "cpuset.cpus").write_text("0-1\n")
    (groups["cpuset"] / "cpuset.effective_cpus").write_text("0-1\n")
    return groups


def test_v2_live_limits(tmp_path: Path) -> None:
    group = _v2_group(tmp_path)
    cg = CGroup(VMID, root=tmp_path)
    assert cg.layout is Layout.V2
    cg.set_memory(1024, 512)
    assert (group / "memory.max").read_text() == "1073741824"
    assert (group / "memory.high").read_text() == "1065353216"
    assert (group / "memory.swap.max").read_text() == "536870912"
    cg.set_cpulimit(0.5)
    assert (group / "cpu.max").read_text() == "50000 100000"
    cg.set_cpulimit(0)
    assert (group / "cpu.max").read_text() == "max 100000"
    cg.set_cpuunits(None)
    assert (group / "cpu.weight").read_text() == "100"


def test_v1_live_limits(tmp_path: Path) -> None:
    groups = _v1_group(tmp_path)
    cg = CGroup(VMID, root=tmp_path)
    assert cg.layout is Layout.V1
    assert memsw_supported(tmp_path) is False  # only the CT's group has the file here
    cg.set_memory(1024, 256)
    assert (groups["memory"] / "memory.limit_in_bytes").read_text() == "1073741824"
    assert (groups["memory"] / "memory.memsw.limit_in_bytes").read_text() == "1342177280"
    cg.set_cpulimit(1.5)
    assert (groups["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
    assert (groups["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    cg.set_cpulimit(0)
    assert (groups["cpu"] / "cpu.cfs_quota_us").read_text() == "-1"
    cg.set_cpuunits(None)
    assert (groups["cpu"] / "cpu.shares").read_text() == "1024"


def test_v1_cpuset_narrows_the_whole_subtree(tmp_path: Path) -> None:
    groups = _v1_group(tmp_path)
    cg = CGroup(VMID, root=tmp_path)
    cg.set_cpuset("1")
    assert (groups["cpuset"] / "cpuset.cpus").read_text() == "1"
    assert (groups["cpuset"] / "ns" / "cpuset.cpus").read_text() == "1"
    assert cg.cpuset_cpus() == {0, 1}  # effective_cpus is the kernel's business


def test_write_errors_name_the_file_and_the_container(tmp_path: Path) -> None:
    _v2_group(tmp_path)
    cg = CGroup(VMID + 1, root=tmp_path)  # no such group
    with pytest.raises(StateError, match=rf"unable to set cpu.max of CT {VMID + 1} to '50000"):
        cg.set_cpulimit(0.5)


def test_figures_of_a_missing_group_are_zero(tmp_path: Path) -> None:
    _v2_group(tmp_path)
    cg = CGroup(VMID + 1, root=tmp_path)
    assert cg.memory_usage() == 0
    assert cg.cpu_usage_ns() == 0
    assert cg.cpuset_cpus() is None


@pytest.mark.parametrize(
    ("layout", "key", "given", "written"),
    [
        (Layout.V1, "cpu.shares", 0, "2"),
        (Layout.V1, "cpu.shares", None, "1024"),
        (Layout.V2, "cpu.weight", 0, "1"),
        (Layout.V2, "cpu.weight", None, "100"),
    ],
)
def test_cpuunits_live_as_at_start(
    tmp_path: Path, layout: Layout, key: str, given: int | None, written: str
) -> None:
    """cpuunits 0 was written live as the default (1024) and clamped at start (2)."""
    group = CGroup(900000001, root=tmp_path, layout=layout)
    group.path("cpu").mkdir(parents=True)
    group.set_cpuunits(given)
    assert group.read("cpu", key) == written
    if given is not None:
        at_start = dict(lxc_keys(Limits(memory=512, swap=0, cpuunits=given), layout))
        assert written in at_start.values()
