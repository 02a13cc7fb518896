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


def refused(target: str, prefix: str | Path, bindir: str | Path) -> str:
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO), target, f"PREFIX={prefix}", f"BINDIR={bindir}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.splitlines()[0]


def test_install_and_uninstall_touch_nothing_that_is_not_ctkit_s(tmp_path: Path) -> None:
    """A PREFIX with a space made uninstall run ``rm -rf`` on the words of it (an unrelated
    directory went); uninstall of PREFIX=/usr/local removed all of it; install replaced
    another program's pct without a word, and uninstall then removed it."""
    mine = tmp_path / "srv/my"
    mine.mkdir(parents=True)
    (mine / "data").write_text("kept")
    for target in ("install", "uninstall"):
        assert refused(target, f"{tmp_path}/srv/my ctkit", tmp_path / "bin") == (
            f"PREFIX must be an absolute path of letters, digits and ._+- "
            f"(got '{tmp_path}/srv/my ctkit')"
        )
        assert refused(target, "opt/ctkit", tmp_path / "bin").startswith("PREFIX must be")
        assert refused(target, tmp_path / "opt", f"{tmp_path}/bin/").startswith("BINDIR must be")
    assert (mine / "data").read_text() == "kept"
    usrlocal = tmp_path / "usrlocal"
    (usrlocal / "share").mkdir(parents=True)
    (usrlocal / "share/file").write_text("kept")
    assert refused("install", usrlocal, usrlocal / "bin") == (
        f"refusing to install into '{usrlocal}': it is not empty and not a ctkit installation"
    )
    (usrlocal / "bin").mkdir()
    (usrlocal / "bin/pct").symlink_to(usrlocal / "bin/pct")  # as ctkit's would be, yet it is not
    assert refused("uninstall", usrlocal, usrlocal / "bin") == (
        f"'{usrlocal}' is not a ctkit installation: left as it is"
    )
    assert (usrlocal / "share/file").read_text() == "kept" and (usrlocal / "bin/pct").is_symlink()
    # an install stopped before pip finished left a venv without ctkit in it: still ctkit's
    stopped = tmp_path / "stopped"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(stopped)], check=True)
    (stopped / ".ctkit").touch()
    make("uninstall", stopped, tmp_path / "bin")
    assert not stopped.exists()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pct").write_text("#!/bin/sh\necho other\n")
    assert refused("install", tmp_path / "opt/ctkit", bindir) == (
        f"refusing to replace '{bindir}/pct': it is not a link to a ctkit installation"
    )
    assert (bindir / "pct").read_text() == "#!/bin/sh\necho other\n"
    assert not (tmp_path / "opt").exists()
