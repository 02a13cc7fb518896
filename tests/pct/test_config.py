"""pct set / pending / config on real containers: live cgroup limits read back from the kernel,
deferred keys in [pve:pending], volume handling (spec pct.md §2.5, §9 cases 14–25, 41)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.runtime.cgroups import CGroup, Layout, detect_layout, parse_cpulist
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc

Text = Callable[[int], str]
Images = Callable[[int], Path]
V1 = detect_layout() is Layout.V1


@pytest.fixture
def ct(pct: Pct, vmid: int, busybox_template: Path) -> int:
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--mp0", "local:0,mp=/data")
    return vmid


def test_cases_14_15_live_limits_reach_the_cgroup(pct: Pct, ct: int, conf_text: Text) -> None:
    pct("start", ct)
    cg = CGroup(ct)
    pct(
        "set", ct, "--memory", "1024", "--swap", "256", "--cpulimit", "0.5",
        "--cpuunits", "500", "--cores", "1",
    )  # fmt: skip
    if V1:
        assert cg.read("memory", "memory.limit_in_bytes") == "1073741824"
        if (cg.path("memory") / "memory.memsw.limit_in_bytes").exists():
            assert cg.read("memory", "memory.memsw.limit_in_bytes") == str(1280 << 20)
        assert cg.read("cpu", "cpu.cfs_quota_us") == "50000"
        assert cg.read("cpu", "cpu.cfs_period_us") == "100000"
        assert cg.read("cpu", "cpu.shares") == "500"
    else:
        assert cg.read("memory", "memory.max") == "1073741824"
        assert cg.read("memory", "memory.high") == "1065353216"
        assert cg.read("memory", "memory.swap.max") == str(256 << 20)
        assert cg.read("cpu", "cpu.max") == "50000 100000"
        assert cg.read("cpu", "cpu.weight") == "500"
    assert len(parse_cpulist(cg.read("cpuset", "cpuset.cpus"))) == 1
    text = conf_text(ct)
    for line in ("memory: 1024", "swap: 256", "cpulimit: 0.5", "cpuunits: 500", "cores: 1"):
        assert f"{line}\n" in text
    assert "pve:pending" not in text
    assert not [ln for ln in pct("pending", ct).out.splitlines() if ln.startswith("new ")]
    # growing again works too (v1 needs its limits raised in the right order)
    host_cpus = os.cpu_count() or 1
    pct("set", ct, "--memory", "2048", "--cores", str(host_cpus), "--delete", "cpulimit")
    mem_key = "memory.limit_in_bytes" if V1 else "memory.max"
    assert cg.read("memory", mem_key) == str(2048 << 20)
    assert len(parse_cpulist(cg.read("cpuset", "cpuset.cpus"))) == host_cpus
    if V1:
        assert cg.read("cpu", "cpu.cfs_quota_us") == "-1"


def test_options_before_the_vmid(pct: Pct, ct: int, conf_text: Text) -> None:
    """Proxmox's option parser takes options anywhere: ``pct set --memory 256 101`` took the
    option for the VMID ("vmid: type check ('integer') failed - got '--memory=256'")."""
    pct("set", "--memory", "256", "-onboot", "1", ct, "--cores", "1")
    text = conf_text(ct)
    assert "memory: 256\n" in text and "onboot: 1\n" in text and "cores: 1\n" in text


def test_a_repeated_list_option_joins_its_values(pct: Pct, ct: int, conf_text: Text) -> None:
    """``--nameserver a --nameserver b`` was refused ("duplicate option"); Proxmox joins a
    ``-list`` format's values."""
    pct("set", ct, "--nameserver", "198.18.0.1", "--nameserver", "198.18.0.2",
        "--tags", "a", "--tags", "b;c")  # fmt: skip
    text = conf_text(ct)
    assert "nameserver: 198.18.0.1 198.18.0.2\n" in text and "tags: a;b;c\n" in text
    pct("set", ct, "--memory", "256", "--memory", "384")  # not a list: the last one, as Proxmox
    assert "memory: 384\n" in conf_text(ct)


def test_set_of_a_stopped_ct_applies_its_own_keys_only(
    pct: Pct, ct: int, conf_text: Text, ctroot: Path
) -> None:
    """As Proxmox's ``vmconfig_apply_pending`` with the command's own keys: a change left
    pending (a ``pct set`` of the running container) waits for the start; a ``pct set
    --onboot 1`` applied it, a pending mount point delete among them."""
    conf = ctroot / f"etc/pve/lxc/{ct}.conf"
    conf.write_text(conf_text(ct) + "\n[pve:pending]\nmemory: 1024\n")
    pct("set", ct, "--onboot", "1")
    text = conf_text(ct)
    assert "onboot: 1\n" in text.split("[pve:pending]")[0]
    assert text.endswith("[pve:pending]\nmemory: 1024\n")
    pct("start", ct)  # the start applies what is pending
    assert "[pve:pending]" not in conf_text(ct) and "memory: 1024\n" in conf_text(ct)
    pct("stop", ct)


def test_case_16_17_deferred_keys_wait_in_pending(pct: Pct, ct: int, conf_text: Text) -> None:
    pct("start", ct)
    pct("set", ct, "--ostype", "ubuntu", "--tty", "4", "--hostname", "renamed")
    text = conf_text(ct)
    assert "[pve:pending]\nostype: ubuntu\ntty: 4\n" in text
    assert "hostname: renamed\n" in text.split("[pve:pending]")[0]  # hot-plugged at once
    pending = pct("pending", ct).out
    assert "cur ostype: unmanaged\nnew ostype: ubuntu\n" in pending
    assert "new tty: 4\n" in pending and "cur tty" not in pending
    assert "ostype: ubuntu\n" in pct("config", ct).out
    current = pct("config", ct, "--current").out
    assert "ostype: unmanaged\n" in current and "tty:" not in current
    pct("set", ct, "--revert", "tty")
    assert "tty" not in pct("pending", ct).out
    pct("stop", ct)  # post-stop applies what is pending
    text = conf_text(ct)
    assert "pve:pending" not in text and "ostype: ubuntu\n" in text


def test_case_18_19_deleting_a_mount_point(
    pct: Pct, ct: int, conf_text: Text, images: Images
) -> None:
    volid = f"local:{ct}/subvol-{ct}-disk-1.subvol"
    pct("start", ct)
    # running: unmounted at once (Proxmox keeps it pending until the next start)
    pct("set", ct, "--delete", "mp0")
    assert "del mp0" not in pct("pending", ct).out and f"unused0: {volid}\n" in conf_text(ct)
    assert "/data" not in pct("exec", ct, "--", "cat", "/proc/mounts").out
    pct("set", ct, "--mp0", f"{volid},mp=/data")  # and back, hot-plugged
    assert "/data" in pct("exec", ct, "--", "cat", "/proc/mounts").out
    pct("stop", ct)
    pct("set", ct, "--delete", "mp0")
    text = conf_text(ct)
    assert "mp0:" not in text and f"unused0: {volid}\n" in text
    assert (images(ct) / f"subvol-{ct}-disk-1.subvol").is_dir()
    pct("set", ct, "--delete", "unused0")
    assert "unused0" not in conf_text(ct)
    assert not (images(ct) / f"subvol-{ct}-disk-1.subvol").exists()


def test_case_20_required_and_read_only_options(pct: Pct, ct: int, conf_text: Text) -> None:
    before = conf_text(ct)
    res = pct("set", ct, "--delete", "memory", check=False)
    assert res.rc != 0 and "unable to delete required option 'memory'" in res.err
    res = pct("set", ct, "--unprivileged", "0", check=False)
    assert res.rc != 0 and "unable to modify read-only option: 'unprivileged'" in res.err
    res = pct("set", ct, check=False)
    assert res.rc != 0 and "no options specified" in res.err
    assert conf_text(ct) == before


def test_case_21_new_mount_point_on_a_stopped_ct(
    pct: Pct, ct: int, conf_text: Text, images: Images
) -> None:
    pct("set", ct, "--mp1", "local:10,mp=/srv")
    assert f"mp1: local:{ct}/vm-{ct}-disk-2.raw,mp=/srv,size=10G\n" in conf_text(ct)
    assert (images(ct) / f"vm-{ct}-disk-2.raw").stat().st_size == 10 << 30


def test_case_22_23_24_net_nameserver_digest(pct: Pct, ct: int, conf_text: Text) -> None:
    pct("set", ct, "--net0", "name=eth0,bridge=vmbr0,ip=dhcp")
    net = re.search(r"^net0: (.*)$", conf_text(ct), re.M)
    assert net is not None
    assert re.fullmatch(
        r"name=eth0,bridge=vmbr0,hwaddr=BC:24:11(:[0-9A-F]{2}){3},ip=dhcp,type=veth", net.group(1)
    )
    pct("set", ct, "--nameserver", "1.1.1.1,9.9.9.9")
    assert "nameserver: 1.1.1.1 9.9.9.9\n" in conf_text(ct)
    before = conf_text(ct)
    res = pct("set", ct, "--nameserver", "1.1.1.300", check=False)
    assert res.rc != 0 and "nameserver: invalid format" in res.err
    stale = "0" * 40
    res = pct("set", ct, "--memory", "300", "--digest", stale, check=False)
    assert res.rc != 0
    assert res.err == "detected modified configuration - file changed by other user? Try again.\n"
    assert conf_text(ct) == before


def test_case_25_protection_blocks_volume_changes(pct: Pct, ct: int, conf_text: Text) -> None:
    pct("set", ct, "--protection", "1")
    res = pct("set", ct, "--mp1", "local:1,mp=/x", check=False)
    assert res.rc != 0 and f"can't update CT {ct} drive 'mp1' - protection mode enabled" in res.err
    res = pct("destroy", ct, check=False)
    assert res.rc != 0 and res.err == f"can't remove CT {ct} - protection mode enabled\n"
    pct("set", ct, "--delete", "protection")
    pct("destroy", ct)


def test_case_41_unlock(pct: Pct, ct: int, ctroot: Path, conf_text: Text) -> None:
    res = pct("unlock", ct, check=False)
    assert res.rc != 0 and res.err == "no lock found trying to remove any lock\n"
    with open(ctroot / f"etc/pve/lxc/{ct}.conf", "a") as fh:
        fh.write("lock: backup\n")
    res = pct("set", ct, "--memory", "300", check=False)
    assert res.rc != 0 and res.err == "CT is locked (backup)\n"
    pct("unlock", ct)
    assert "lock" not in conf_text(ct)


def test_a_value_that_starts_with_a_dash_is_kept(pct: Pct, ct: int, conf_text: Text) -> None:
    """Proxmox's option parser hands a value option the next word whatever it looks like; a
    boolean given alone still leaves the next option an option."""
    pct("set", ct, "-description", "-foo", "-onboot", "-hostname", "web-1")
    text = conf_text(ct)
    assert "#-foo\n" in text
    assert "onboot: 1\n" in text and "hostname: web-1\n" in text
    pct("set", ct, "--description", "--bar=1")
    assert "#--bar=1\n" in conf_text(ct)


def test_an_unknown_option_takes_no_option_as_its_value(pct: Pct, vmid: int) -> None:
    """The error names the unknown option (parent is no option of pct set); the next option
    stays an option, as with Proxmox's option parser."""
    res = pct("set", vmid, "--parent", "--cores", "1", check=False)
    assert res.rc == 2 and "parent: property is not defined in schema" in res.err, res.text


def test_repeated_delete_and_revert_options_add_up(
    pct: Pct, vmid: int, ctroot: Path, conf_text: Text
) -> None:
    """``--delete`` and ``--revert`` are list options in Proxmox: ``--delete a --delete b``
    deletes both (the last one alone was kept, the others dropped without a word)."""
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("arch: amd64\nhostname: t\nmemory: 512\nswap: 256\ncores: 2\nostype: debian\n")
    pct("set", vmid, "--delete", "hostname", "-delete", "swap,cores")
    text = conf_text(vmid)
    assert "hostname" not in text and "swap" not in text and "cores" not in text, text
    assert "memory: 512\n" in text
    conf.write_text("arch: amd64\nmemory: 512\nswap: 256\nostype: debian\n\n[pve:pending]\n"
                    "memory: 1024\nswap: 128\n")  # fmt: skip
    pct("set", vmid, "--revert", "memory", "--revert", "swap")
    text = conf_text(vmid)
    assert "memory: 512\n" in text and "swap: 256\n" in text and "pending" not in text, text


def test_a_line_the_parse_cannot_read_is_named_before_set_drops_it(
    pct: Pct, vmid: int, ctroot: Path, conf_text: Text
) -> None:
    """Proxmox warns about every config line it cannot read; ctkit kept quiet, and the next
    pct set wrote the file without them (hand-added 'Memory: 2048', a raw key no version
    takes) without a word."""
    conf = ctroot / f"etc/pve/lxc/{vmid}.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "arch: amd64\nhostname: t\nMemory: 2048\nlxc.bogus.key: 1\ncpulimit: 1 2\n"
        "memory: 512\nostype: debian\n"
    )
    lost = [
        f"vm {vmid} - unable to parse config: Memory: 2048",
        f"vm {vmid} - unable to parse config: lxc.bogus.key: 1",
        f"vm {vmid} - unable to parse value of 'cpulimit' - type check ('number') failed - "
        "got '1 2'",
    ]
    shown = pct("config", vmid)
    assert shown.err.splitlines() == lost and "Memory" not in shown.out
    res = pct("set", vmid, "--cpuunits", "302")
    assert [ln for ln in res.out.splitlines() if ln.startswith(f"vm {vmid} - ")] == lost
    assert "Memory" not in conf_text(vmid) and "cpulimit: 1 2\n" in conf_text(vmid)
