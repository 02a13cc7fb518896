"""The interactive commands import only what they need, and every command's --help works.

``pct status/config/list``, ``pveam list local``, ``vzdump job list`` and every ``--help`` must
answer at once (DESIGN.md, Performance: <= 0.15 s as a whole process). Most of that time is
imports, so these tests run each command in a fresh interpreter and fail when one of the heavy
third-party modules (pydantic, which typer would use to convert values, pyroute2, python-lxc,
requests, gnupg, zstandard, rich) or ctkit's guest-setup package got loaded: the import set
cannot grow back unnoticed. bench/cli_bench.py measures the time itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# top-level names; a module counts when it or any of its sub-modules is loaded
HEAVY = (
    "pyroute2",
    "requests",
    "urllib3",
    "gnupg",
    "lxc",
    "_lxc",
    "zstandard",
    "rich",
    "shared.guest",
    "shared.net",
    "asyncio",
    "pydantic",
)
VMID = 900000970
CONFIG = """\
arch: amd64
hostname: budget{n}
memory: 512
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:0{n},ip=dhcp,type=veth
ostype: debian
rootfs: local:{vmid}/vm-{vmid}-disk-0.raw,size=4G
unprivileged: 1
"""

# runs the command as its console script would (and exits as it does), then reports what got
# imported: from an exit handler, which both ways of ending the process run
RUN_ONE = """
import atexit, json, sys
heavy = json.loads(sys.argv[1])
prog, args = sys.argv[2], sys.argv[3:]
sys.argv = [prog, *args]

def report():
    sys.stdout.flush()
    loaded = sorted({h for m in sys.modules for h in heavy if m == h or m.startswith(h + ".")})
    print("\\n" + json.dumps({"loaded": loaded}))

atexit.register(report)
module = __import__(prog + ".cli", fromlist=["main"])
module.main()
"""

# the help of every visible command and sub-command of one app, in one interpreter
RUN_HELPS = """
import contextlib, io, json, sys
import typer
import shared.quickexit
heavy = json.loads(sys.argv[1])
prog = sys.argv[2]
module = __import__(prog + ".cli", fromlist=["main"])
shared.quickexit.leave = lambda code: None  # one process runs every help: exit normally

def walk(cmd, path):
    yield path
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            yield from walk(sub, [*path, name])

results = []
for path in list(walk(typer.main.get_command(module.app), [])):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [prog, *path, "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main()
            code = 0
        except SystemExit as exit:
            code = exit.code
    results.append({"path": path, "code": code, "out": out.getvalue(), "err": err.getvalue()})
loaded = sorted({h for m in sys.modules for h in heavy if m == h or m.startswith(h + ".")})
print(json.dumps({"results": results, "loaded": loaded}))
"""


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(HEAVY), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def short_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A CTKIT_ROOT with a short path, as /var/lib/lxc is: LXC names a CT's command socket
    after its path only while that fits in a socket address (else it hashes it, and the
    state check then has to ask LXC itself); pytest's own temp dirs can be too deep."""
    root = Path(tempfile.mkdtemp(prefix="ib-", dir="/tmp"))
    monkeypatch.setenv("CTKIT_ROOT", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def populated(short_root: Path) -> Path:
    """Three stopped containers (one with a stale generated LXC config), a template, a job."""
    ctroot = short_root
    conf_dir = ctroot / "etc/pve/lxc"
    conf_dir.mkdir(parents=True)
    for n in range(3):
        vmid = VMID + n
        (conf_dir / f"{vmid}.conf").write_text(CONFIG.format(n=n, vmid=vmid))
    # a container started once keeps its generated config: its state must still be cheap
    lxc_dir = ctroot / "var/lib/lxc" / str(VMID + 1)
    lxc_dir.mkdir(parents=True)
    (lxc_dir / "config").write_text(f"lxc.uts.name = budget1\nlxc.rootfs.path = {lxc_dir}/r\n")
    (ctroot / "etc/pve/jobs.cfg").write_text(
        f"vzdump: nightly\n\tschedule 02:30\n\tvmid {VMID}\n\tmode stop\n"
    )
    cache = ctroot / "var/lib/vz/template/cache"
    cache.mkdir(parents=True)
    (cache / "debian-12-standard_12.7-1_amd64.tar.zst").write_bytes(b"\0" * 512)
    return ctroot


COMMANDS = {
    "pct status": (["pct", "status", str(VMID)], "status: stopped\n"),
    "pct status, stale LXC config": (["pct", "status", str(VMID + 1)], "status: stopped\n"),
    "pct config": (["pct", "config", str(VMID)], "hostname: budget0\n"),
    "pct list": (["pct", "list"], f"{VMID + 2:<10} stopped"),
    "pveam list local": (["pveam", "list", "local"], "local:vztmpl/debian-12-standard"),
    "vzdump job list": (["vzdump", "job", "list"], "nightly"),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_interactive_command_imports_nothing_heavy(populated: Path, name: str) -> None:
    argv, expected = COMMANDS[name]
    proc = _python(RUN_ONE, *argv)
    report: dict[str, Any] = json.loads(proc.stdout.rstrip("\n").rsplit("\n", 1)[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expected in proc.stdout
    assert report["loaded"] == [], f"{name} imported {report['loaded']}"


@pytest.mark.parametrize("prog", ["pct", "pveam", "vzdump"])
def test_every_help_works_and_imports_nothing_heavy(ctroot: Path, prog: str) -> None:
    proc = _python(RUN_HELPS, prog)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert len(report["results"]) > 5
    for result in report["results"]:
        shown = " ".join([prog, *result["path"], "--help"])
        assert result["code"] == 0, f"{shown}: {result['err']}"
        assert "Usage:" in result["out"], f"{shown}: {result['out']!r}"
        assert result["err"] == "", f"{shown}: {result['err']}"
    assert report["loaded"] == [], f"{prog} --help imported {report['loaded']}"


# what a tar backup (``vzdump <vmid> --dumpdir ...``) loads only when it is used: restic's
# driver and path (a restic storage), the archive reader (--verify), mail (notification), the
# start machinery (a running CT in stop mode) and snapshots (snapshot mode)
ON_DEMAND = (
    "shared.runtime.lifecycle",
    "shared.runtime.snapshot",
    "shared.runtime.lxcconf",
    "shared.restic",
    "shared.storage.resticbackups",
    "shared.backups.resticstream",
    "shared.backups.verify",
    "vzdump.engine.resticpath",
    "vzdump.notify",
    "email",
)
LOAD_BACKUP_PATH = """
import json, sys
import vzdump.cli, vzdump.engine.job
wanted = json.loads(sys.argv[1])
loaded = {w for m in sys.modules for w in wanted if m == w or m.startswith(w + ".")}
print(json.dumps(sorted(loaded)))
"""


def test_the_backup_path_loads_restic_verify_and_mail_on_demand() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_BACKUP_PATH, json.dumps(ON_DEMAND)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
