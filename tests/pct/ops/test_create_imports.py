"""What ``pct create`` loads: every module is paid on every run, so the create path keeps out
what only other commands need (netlink, the start machinery, live changes of ``pct set``)."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest

from pct.ops.valuecheck import value_check
from shared.errors import ParamError

NOT_FOR_CREATE = [
    "pyroute2",
    "shared.runtime.lifecycle",
    "shared.runtime.recovery",
    "pct.ops.setconf",
    "pct.ops.hotplug",
]


def _loaded_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_create_path_leaves_out_other_commands_machinery() -> None:
    loaded = _loaded_by("pct.ops.create")
    assert not loaded & set(NOT_FOR_CREATE)


def test_the_guest_package_loads_while_the_archive_is_extracted() -> None:
    """Not with the create path: ``pct create`` loads it in a thread during the extraction,
    and the guest setup after the extraction imports exactly what that thread loaded."""
    from pct.ops import provision

    loaded = _loaded_by("pct.ops.create")
    assert not {m for m in loaded if m == "shared.guest" or m.startswith("shared.guest.")}
    source = inspect.getsource(provision.detect_guest)
    imports = re.findall(r"^\s+from (shared\.guest\.\w+) import", source, re.M)
    assert sorted(imports) == sorted(provision.GUEST_MODULES)


def test_mtu_checked_against_the_host_interface() -> None:
    value_check("net0", {"name": "eth0", "bridge": "lo", "mtu": 1500})
    with pytest.raises(ParamError) as err:
        value_check("net0", {"name": "eth0", "bridge": "lo", "mtu": 70000})
    assert err.value.errors == {"net0": "MTU size '70000' is bigger than bridge MTU '65536'"}


def test_restore_and_clone_load_the_guest_package_while_they_wait() -> None:
    """``pct restore`` loads the guest modules during the extraction and ``pct clone --full``
    during the copy, not with their code; the package itself loads none of its modules."""
    from pct.ops import clone, provision

    loaded = _loaded_by("pct.ops.restore") | _loaded_by("pct.ops.clone")
    guest = {m for m in loaded if m == "shared.guest" or m.startswith("shared.guest.")}
    assert guest == {"shared.guest", "shared.guest.chroot"}
    assert _loaded_by("shared.guest") & set(provision.GUEST_MODULES) == set()
    source = inspect.getsource(clone._run)
    assert re.findall(r"^\s+from (shared\.guest\.\w+) import", source, re.M) == [
        "shared.guest.setup"
    ]
    assert "shared.guest.setup" in provision.GUEST_MODULES
