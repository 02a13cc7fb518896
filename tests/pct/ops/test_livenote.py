"""A ``pct set`` killed during its live changes: the next ``pct set`` makes the keys it was
changing live as the config says (pct/ops/livenote.py)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from pct.ops import livenote
from shared.errors import CtkitError
from shared.runtime.cgroups import CGroup, Layout, detect_layout
from shared.runtime.lxcconf import veth_name
from tests.pct.bridges import link_exists as _exists
from tests.pct.bridges import made_bridge as _bridge
from tests.pct.bridges import master_of as _master
from tests.pct.conftest import Pct

pytestmark = pytest.mark.lxc
DEAD_PID = 2**22 + 1  # above any pid_max: no process has it

# pct set, held right before or after a named step of its live change (where the test kills it)
HELD_AT = """
import importlib, sys
from pct import cli
from tests.midway import hold

module, name, when = sys.argv[1:4]
owner = importlib.import_module(module)
path = name.split(".")
holder = owner if len(path) == 1 else getattr(owner, path[0])
real = getattr(holder, path[-1])

def held(*args, **kwargs):
    if when == "before":
        print("here", flush=True)
        hold()
    result = real(*args, **kwargs)
    print("here", flush=True)
    hold()
    return result

setattr(holder, path[-1], held)
sys.argv = ["pct", "set", *sys.argv[4:]]
cli.main()
"""


def _killed_after(module: str, name: str, *args: object, when: str = "after") -> None:
    """``pct set *args``, killed with SIGKILL right after (or before) ``module.name`` runs."""
    from tests.midway import stopped_midway

    proc, line = stopped_midway(HELD_AT, module, name, when, *map(str, args))
    try:
        assert line == "here", line
    finally:
        proc.kill()
        proc.wait()


def test_a_bridge_change_killed_half_way_is_put_back_by_the_next_pct_set(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """Killed after net0 left its bridge and before it joined the new one: the interface was
    on no bridge, and neither ``--revert net0`` nor the config's value given again put it
    back (nothing differed in the config). The revert now finds the note and puts net0 on its
    bridge again, addresses and all."""
    subnet = random.randrange(100, 200)
    with _bridge(f"198.18.{subnet}.1") as old, _bridge(f"198.18.{subnet + 50}.1") as new:
        pct("create", vmid, busybox_template, "--rootfs", "local:0")
        pct("start", vmid)
        value = f"name=eth0,bridge={old},hwaddr=BC:24:11:00:00:02,ip=198.18.{subnet}.20/24"
        pct("set", vmid, "--net0", value)
        veth = veth_name(vmid, 0)
        assert veth is not None and _master(veth) == old
        _killed_after("shared.net.hotplug", "unplug", vmid, "--net0", value.replace(old, new))
        assert _master(veth) is None  # what the kill left
        res = pct("set", vmid, "--revert", "net0")
        assert "an earlier pct set ended during its live changes - making net0 live" in res.text
        assert _master(veth) == old
        text = conf_text(vmid)
        assert f"net0: {value}" in text and "pve:pending" not in text, text
        inside = pct("exec", vmid, "--", "ip", "addr", "show", "eth0").out
        assert f"inet 198.18.{subnet}.20/24" in inside
        pct("exec", vmid, "--", "ping", "-c", "1", "-W", "5", f"198.18.{subnet}.1")
        assert not livenote.note_path(vmid).exists()
        pct("stop", vmid)


def test_an_interface_a_killed_pct_set_was_adding_is_removed_by_the_next(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """net10 of a 9-digit CT (a host name of its own), killed once its pair was made and
    plugged, before its peer went into the container: ``--revert net10`` left the pair on the
    host. It goes now, as the config never had the interface."""
    from shared.net.hotplug import hashed_veth_name

    host = hashed_veth_name(vmid, 10)
    try:
        with _bridge(f"198.18.{random.randrange(100, 200)}.1") as bridge:
            pct("create", vmid, busybox_template, "--rootfs", "local:0")
            pct("start", vmid)
            _killed_after("shared.net.hotplug", "plug", vmid, "--net10",
                          f"name=eth10,bridge={bridge}")  # fmt: skip
            assert _exists(host)
            pct("set", vmid, "--revert", "net10")
            assert not _exists(host)
            assert "net10" not in conf_text(vmid)
            pct("stop", vmid)
    finally:
        if _exists(host):
            with IPRoute() as ipr:
                ipr.link("del", index=ipr.link_lookup(ifname=host)[0])


def test_the_repair_never_takes_another_interface_of_the_same_name(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """net12 of a 9-digit CT given net0's name (eth0), killed once its peer was in the
    container: the repair removed what the pending value named, found by that name inside,
    and took net0 away (its pair gone on both sides, the config still naming it)."""
    with _bridge(f"198.18.{random.randrange(100, 200)}.1") as bridge:
        net0 = f"name=eth0,bridge={bridge},hwaddr=BC:24:11:00:00:03"
        pct("create", vmid, busybox_template, "--rootfs", "local:0", "--net0", net0)
        pct("start", vmid)
        host0 = veth_name(vmid, 0)
        assert host0 is not None and _master(host0) == bridge
        _killed_after("shared.net.hotplug", "in_netns", vmid, "--net12",
                      f"name=eth0,bridge={bridge}", when="before")  # fmt: skip
        pct("set", vmid, "--revert", "net12")
        assert _master(host0) == bridge
        links = pct("exec", vmid, "--", "ip", "-o", "link").out
        assert " eth0@" in links and " vhp" not in links, links
        assert "net12" not in conf_text(vmid)
        pct("stop", vmid)


def _memory_limit(vmid: int) -> int:
    cg = CGroup(vmid)
    key = "memory.limit_in_bytes" if detect_layout() is Layout.V1 else "memory.max"
    return int(cg.read("memory", key))


def test_a_limit_written_by_a_killed_pct_set_goes_back_to_the_configs(
    pct: Pct, vmid: int, busybox_template: Path, conf_text: Callable[[int], str]
) -> None:
    """Killed after the new memory limit was written to the cgroup, before the config had it:
    ``--revert memory`` dropped the pending value and left the cgroup at the new limit. The
    revert now writes the config's limit again; the same holds for the config's value given
    again."""
    pct("create", vmid, busybox_template, "--rootfs", "local:0", "--memory", "384")
    pct("start", vmid)
    assert _memory_limit(vmid) == 384 << 20
    _killed_after("shared.runtime.cgroups", "CGroup.set_memory", vmid, "--memory", "256")
    assert _memory_limit(vmid) == 256 << 20 and "memory: 256" in conf_text(vmid)
    pct("set", vmid, "--revert", "memory")
    assert _memory_limit(vmid) == 384 << 20
    assert "pve:pending" not in conf_text(vmid)
    _killed_after("shared.runtime.cgroups", "CGroup.set_memory", vmid, "--memory", "256")
    pct("set", vmid, "--memory", "384")
    assert _memory_limit(vmid) == 384 << 20
    # a note the container's end left unread goes with the container
    _killed_after("shared.runtime.cgroups", "CGroup.set_memory", vmid, "--memory", "256")
    pct("stop", vmid)
    assert livenote.note_path(vmid).exists()
    pct("destroy", vmid)
    assert not livenote.note_path(vmid).exists()


def test_a_note_of_a_live_writer_or_another_instance_is_left_alone(ctroot: Path, vmid: int) -> None:
    path = livenote.note_path(vmid)
    init = os.getppid()  # any live process stands for the container's init
    with pytest.raises(KeyError), livenote.noting(vmid, {"memory", "net0"}, init):
        raise KeyError  # an interrupt, not the command's own error: the note stays
    assert path.exists()
    # its writer (this process) lives: nothing is owed yet
    assert livenote.owed(vmid, lambda: init) == ([], None) and path.exists()
    dead = {**json.loads(path.read_text()), "pid": DEAD_PID}
    path.write_text(json.dumps(dead))
    assert livenote.owed(vmid, os.getpid) == ([], None)  # another instance runs now
    assert not path.exists()  # and the note is gone
    path.write_text(json.dumps(dead))
    assert livenote.owed(vmid, lambda: init) == (["memory", "net0"], init)
    assert path.exists()  # until the keys are live again: a repair killed is tried again
    livenote.done(vmid)
    assert not path.exists()
    # a hostile note names nothing else
    path.write_text(json.dumps({**dead, "keys": ["../x", "mp0", "net1", 3, "cores", "net05",
                                                  "net32"]}))  # fmt: skip
    assert livenote.owed(vmid, lambda: init) == (["cores", "net1"], init)
    path.write_text(json.dumps({**dead, "keys": ["../x", "mp0"]}))
    assert livenote.owed(vmid, lambda: init) == ([], init) and not path.exists()
    path.write_text("not json")
    assert livenote.owed(vmid, lambda: init) == ([], None) and not path.exists()
    # the command's own error, or its end: the note goes
    with pytest.raises(CtkitError), livenote.noting(vmid, {"memory"}, init):
        raise CtkitError("own")
    with livenote.noting(vmid, {"memory"}, init):
        assert path.exists()
    assert not path.exists()
    with livenote.noting(vmid, set(), init):  # nothing live: no note at all
        assert not path.exists()
