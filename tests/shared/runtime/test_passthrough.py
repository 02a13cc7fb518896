"""Passthrough device nodes: Proxmox's refusals, the node's type, mode and mapped owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.archive.idmap import DEFAULT_UNPRIVILEGED
from shared.errors import CtkitError
from shared.runtime import passthrough


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(CtkitError, match=r"^Device /dev/ctkhp-absent does not exist$"):
        passthrough.device({"path": "/dev/ctkhp-absent"})
    with pytest.raises(CtkitError, match=r"^/dev/shm is not a device$"):
        passthrough.device({"path": "/dev/shm"})
    with pytest.raises(CtkitError, match="invalid device path"):
        passthrough.device({"path": "/dev/a b"})


def test_node_for_an_unprivileged_ct(ctroot: Path, vmid: int) -> None:
    dev = passthrough.device({"path": "/dev/null", "mode": "0604", "uid": 5, "gid": 7})
    assert dev.rule == "c 1:3"
    node = passthrough.make_node(vmid, dev, list(DEFAULT_UNPRIVILEGED))
    assert node == ctroot / f"var/lib/lxc/{vmid}/passthrough/dev/null"
    st = os.stat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat("/dev/null").st_rdev
    assert stat.S_IMODE(st.st_mode) == 0o604 and (st.st_uid, st.st_gid) == (100005, 100007)
    entry = passthrough.mount_entry(vmid, "/dev/null")
    assert entry == f"{node} dev/null none bind,create=file 0 0"
    # a privileged CT: ids as given, default mode 0660; made again over an existing node
    node = passthrough.make_node(vmid, passthrough.device({"path": "/dev/null"}), [])
    st = os.stat(node)
    assert stat.S_IMODE(st.st_mode) == 0o660 and (st.st_uid, st.st_gid) == (0, 0)


def test_unmapped_owner_is_refused(ctroot: Path, vmid: int) -> None:
    dev = passthrough.device({"path": "/dev/null", "uid": 70000})
    with pytest.raises(CtkitError, match="uid 70000 is not mapped"):
        passthrough.make_node(vmid, dev, list(DEFAULT_UNPRIVILEGED))
