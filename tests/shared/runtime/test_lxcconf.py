"""The generated LXC config (spec pct.md §3) against golden files, for both cgroup layouts.

Inputs are container configs in ``golden/<case>.conf``; the expected output for each layout is
``golden/<case>.<v1|v2>.lxc``. The host's LXC config directory is replaced by a scratch one that
ships only some distribution files (so both the specific includes and the fallbacks occur), and
machine-specific strings (python, config dir) are replaced by stable placeholders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.ctconfig.config import parse_config
from shared.errors import ConfigError
from shared.runtime.cgroups import Layout
from shared.runtime.ctview import lxc_view
from shared.runtime.lxcconf import (
    HostInfo,
    LxcView,
    NetView,
    generate,
    idmap_entries,
    include_file,
    pick_cpus,
    root_ids,
    seccomp_rules,
    veth_name,
)

GOLDEN = Path(__file__).parent / "golden"
LXC_CONFIG = "/usr/share/lxc/config"
VMID = 100
# case -> host has AppArmor
CASES = {"basic": False, "privileged": False, "features": True, "full": True, "rawcpuset": False}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """debian has its own include files, ubuntu only common, alpine none (fallbacks)."""
    cdir = tmp_path / "lxc-config"
    cdir.mkdir()
    for name in ("common.conf", "userns.conf", "debian.common.conf", "debian.userns.conf"):
        (cdir / name).write_text("# stub\n")
    (cdir / "ubuntu.common.conf").write_text("# stub\n")
    (cdir / "common.seccomp").write_text("2\ndenylist\nreject_force_umount\nkexec_load errno 1\n")
    return cdir


@pytest.fixture
def fixed_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths as on a real host (root /), so golden files show Proxmox's locations."""
    monkeypatch.setenv("CTKIT_ROOT", "/")


def view_of(case: str) -> LxcView:
    conf = parse_config((GOLDEN / f"{case}.conf").read_bytes(), VMID, strict=True)
    return lxc_view(conf)


def host(
    layout: Layout, config_dir: Path, *, apparmor: bool = False, memsw: bool = True
) -> HostInfo:
    return HostInfo(
        layout=layout, memsw=memsw, apparmor=apparmor, cpus=8, seed=42, config_dir=config_dir
    )


def stable(text: str, config_dir: Path) -> str:
    return text.replace(sys.executable, "@PYTHON@").replace(str(config_dir), LXC_CONFIG)


@pytest.mark.usefixtures("fixed_root")
@pytest.mark.parametrize("layout", [Layout.V1, Layout.V2], ids=["v1", "v2"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_config_matches_golden(case: str, layout: Layout, config_dir: Path) -> None:
    text = generate(view_of(case), host(layout, config_dir, apparmor=CASES[case]))
    expected = (GOLDEN / f"{case}.{layout.value}.lxc").read_text()
    assert stable(text, config_dir) == expected


@pytest.mark.usefixtures("fixed_root")
def test_v1_host_without_swap_accounting_gets_no_memsw_line(config_dir: Path) -> None:
    text = generate(view_of("basic"), host(Layout.V1, config_dir, memsw=False))
    assert "lxc.cgroup.memory.limit_in_bytes = 536870912\n" in text
    assert "memsw" not in text


@pytest.mark.usefixtures("fixed_root")
def test_no_apparmor_lines_without_apparmor_on_the_host(config_dir: Path) -> None:
    text = generate(view_of("features"), host(Layout.V2, config_dir, apparmor=False))
    assert "lxc.apparmor" not in text
    # fuse still needs its device entry
    assert "lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file 0 0\n" in text


@pytest.mark.usefixtures("fixed_root")
def test_cores_pick_a_seeded_random_cpuset(
    config_dir: Path,
) -> None:
    first = generate(view_of("full"), host(Layout.V2, config_dir))
    again = generate(view_of("full"), host(Layout.V2, config_dir))
    assert first == again
    assert f"lxc.cgroup2.cpuset.cpus = {pick_cpus(2, 8, 42)}\n" in first


def test_seccomp_rules_add_proxmox_entries(config_dir: Path) -> None:
    plain = seccomp_rules(view_of("basic"), config_dir)
    assert plain == (GOLDEN / "basic.seccomp").read_text()
    keyctl = seccomp_rules(view_of("features"), config_dir)
    assert "keyctl errno 38" not in keyctl
    assert "ioctl errno 1 [1,0x9400,SCMP_CMP_MASKED_EQ,0xff00]" in keyctl


def test_include_fallbacks(config_dir: Path) -> None:
    assert include_file("debian", "userns", config_dir) == str(config_dir / "debian.userns.conf")
    assert include_file("ubuntu", "userns", config_dir) == str(config_dir / "userns.conf")
    assert include_file("alpine", "common", config_dir) == str(config_dir / "common.conf")


def test_id_maps_and_root_ids() -> None:
    assert idmap_entries(view_of("basic")) == [("u", 0, 100000, 65536), ("g", 0, 100000, 65536)]
    assert root_ids(view_of("basic")) == (100000, 100000)
    assert root_ids(view_of("full")) == (200000, 200000)  # raw lxc.idmap wins
    assert idmap_entries(view_of("privileged")) == []
    assert root_ids(view_of("privileged")) == (0, 0)


def test_pick_cpus() -> None:
    assert pick_cpus(4, 2) == "0,1"  # never more than the host has
    chosen = pick_cpus(3, 16, seed=7)
    assert chosen == pick_cpus(3, 16, seed=7)
    cpus = [int(c) for c in chosen.split(",")]
    assert len(cpus) == 3 and cpus == sorted(cpus) and all(0 <= c < 16 for c in cpus)


def test_veth_names_longer_than_ifnamsiz_are_left_to_lxc() -> None:
    assert veth_name(100, 0) == "veth100i0"
    assert veth_name(999999999, 31) is None  # 16 characters
    view = LxcView(vmid=999999999, nets=[NetView(index=31, name="eth0")])
    assert "veth.pair" not in generate(view, HostInfo(layout=Layout.V2))


def test_the_environment_goes_under_the_key_the_host_lxc_knows() -> None:
    """LXC 5 (Debian 12's) refuses ``lxc.environment.runtime``: a container with ``env`` did
    not start there."""
    view = LxcView(vmid=100, env=["A=1", "B=2 3"])
    for key in ("lxc.environment.runtime", "lxc.environment"):
        text = generate(view, HostInfo(layout=Layout.V2, env_key=key))
        assert f"\n{key} = A=1\n{key} = B=2 3\n" in text
    assert HostInfo(layout=Layout.V2).env_key == "lxc.environment.runtime"


@pytest.mark.parametrize(
    "line",
    [
        "lxc.environment: A=b\rlxc.rootfs.path = /\rlxc.cap.drop =",
        "lxc.apparmor.profile: unconfined\rlxc.rootfs.path = /",
        "lxc.environment: A=b\0lxc.rootfs.path = /",
    ],
)
def test_a_value_that_would_end_an_lxc_line_is_refused(config_dir: Path, line: str) -> None:
    """LXC ends a line at CR too: a hand-edited config's raw value added its own keys (the
    host's / as the container's root file system)."""
    text = (GOLDEN / "basic.conf").read_bytes() + line.encode() + b"\n"
    view = lxc_view(parse_config(text, VMID))
    with pytest.raises(ConfigError, match=r"^invalid character in 'lxc\."):
        generate(view, host(Layout.V2, config_dir))
