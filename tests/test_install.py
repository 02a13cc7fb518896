"""``make install`` as the README's "Installing for real use" describes it: ctkit in its own
environment under PREFIX, the commands linked into BINDIR, units that run the installed copy
below the right root, an upgrade in place, and ``make uninstall``. Slow: it builds a venv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
KEPT = (
    "from shared import classcode, regexcode; p = classcode.cache_path(); "
    "r = classcode.load(classcode.cache_path(regexcode.KIND), regexcode.FORMAT); "
    "print(p, len(classcode.load(p) or ()), len(r or ()))"
)


def make(target: str, prefix: Path, bindir: Path) -> str:
    proc = subprocess.run(
        ["make", "-C", str(REPO), target, f"PREFIX={prefix}", f"BINDIR={bindir}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_install_upgrade_uninstall(ctroot: Path, tmp_path: Path) -> None:
    prefix, bindir = tmp_path / "opt/ctkit", tmp_path / "bin"
    out = make("install", prefix, bindir)
    assert f"ctkit installed in {prefix}" in out
    for command in ("pct", "vzdump", "pveam"):
        assert os.readlink(bindir / command) == str(prefix / "bin" / command)
    # the commands run the installed copy, not this checkout
    where = subprocess.run(
        [str(prefix / "bin/python"), "-c", "import shared; print(shared.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(prefix)), where
    # and it keeps its dataclass methods and regular expressions compiled, as the checkout
    # does (shared/classcode.py, shared/regexcode.py)
    kept = subprocess.run(
        [str(prefix / "bin/python"), "-c", KEPT],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert kept[0].startswith(str(prefix)) and int(kept[1]) > 300 and int(kept[2]) > 100, kept
    env = {**os.environ, "CTKIT_ROOT": str(ctroot)}
    proc = subprocess.run(
        [str(bindir / "vzdump"), "timer", "install"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "development checkout" not in proc.stderr
    service = (ctroot / "etc/systemd/system/ctkit-scheduler.service").read_text()
    assert f"ExecStart={prefix}/bin/vzdump scheduler run-due" in service
    assert f'Environment="CTKIT_ROOT={ctroot}"' in service
    status = subprocess.run(
        [str(bindir / "pct"), "list"], env=env, capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stderr
    # upgrading is the same command again; the links and the units stay valid
    make("install", prefix, bindir)
    assert (bindir / "pct").resolve() == (prefix / "bin/pct").resolve()
    out = make("uninstall", prefix, bindir)
    assert "configs under /etc/pve and backups are kept" in out
    assert not prefix.exists()
    assert not any(bindir.iterdir())
    assert (ctroot / "etc/systemd/system/ctkit-scheduler.service").exists()


def test_uninstall_leaves_foreign_commands(tmp_path: Path) -> None:
    prefix, bindir = tmp_path / "opt/ctkit", tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pct").symlink_to("/usr/sbin/pct")  # somebody else's pct
    make("uninstall", prefix, bindir)
    assert os.readlink(bindir / "pct") == "/usr/sbin/pct"
