"""``pct restore`` on the command line: console output, stdin, exit codes, a running result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.ctconfig import store
from shared.errors import AlreadyExistsError, ArchiveError
from shared.runtime import lifecycle, lxcapi
from tests.pct.restore.conftest import Backups, leftovers

PCT = [sys.executable, "-c", "from pct.cli import main; main()"]
REPO = Path(__file__).resolve().parents[3]
CONF = """\
arch: amd64
hostname: cli
memory: 256
ostype: debian
rootfs: local:100/vm-100-disk-0.raw,size=128M
swap: 0
"""


def pct(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*PCT, *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def _archive(backups: Backups, unprivileged: bool = False) -> str:
    tree = backups.tree()
    (tree / "etc/marker").write_text("restored\n")
    return backups.archive(CONF + ("unprivileged: 1\n" if unprivileged else ""), [(tree, "./")])


def test_console_output(backups: Backups, vmid: int) -> None:
    archive = _archive(backups)
    proc = pct("restore", str(vmid), archive, "-memory", "300")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == [
        f"recovering backed-up configuration from '{archive}'",
        f"restoring '{archive}' now..",
        f"extracting archive '{backups.path(archive)}'",
    ]
    assert lines[3].startswith("Total bytes read: ") and lines[4] == (
        "merging backed-up and given configuration.."
    )
    assert store.load(vmid).get_raw("memory") == "300"


def test_errors_and_exit_codes(backups: Backups, vmid: int) -> None:
    archive = _archive(backups)
    assert pct("restore", str(vmid), archive).returncode == 0
    proc = pct("restore", str(vmid), archive)
    assert proc.returncode == AlreadyExistsError.exit_code
    assert (
        proc.stderr.strip()
        == f"CT {vmid} already exists on node '{os.uname().nodename.split('.')[0]}'"
    )
    path = backups.path(archive)
    path.write_bytes(path.read_bytes()[:-3000])
    proc = pct("restore", str(vmid + 1), archive)
    assert proc.returncode == ArchiveError.exit_code
    assert proc.stderr.strip().splitlines()[-1] == (
        f"unable to restore CT {vmid + 1} - unexpected end of archive"
    )
    assert leftovers(backups.root, vmid + 1) == []


def test_stdin_pipe(backups: Backups, vmid: int) -> None:
    archive = _archive(backups, unprivileged=True)
    data = backups.path(archive).read_bytes()
    proc = pct("restore", str(vmid), "-", "--rootfs", "local:0.125", stdin=data)
    assert proc.returncode == 0, proc.stderr
    assert "extracting archive from STDIN" in proc.stdout.splitlines()
    conf = store.load(vmid)
    assert conf.unprivileged and conf.get_raw("hostname") == "cli"
    proc = pct("restore", str(vmid + 1), "-", stdin=data)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "restore from pipe requires rootfs parameter"


@pytest.mark.lxc
@pytest.mark.parametrize("unprivileged", ["0", "1"])
def test_restored_container_starts_and_runs(backups: Backups, vmid: int, unprivileged: str) -> None:
    archive = _archive(backups)
    proc = pct("restore", str(vmid), archive, "--unprivileged", unprivileged, "--start", "1")
    assert proc.returncode == 0, proc.stderr
    try:
        assert lxcapi.is_running(vmid)
        argv = lxcapi.attach_argv(vmid, ["cat", "/etc/marker"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "restored\n"
        argv = lxcapi.attach_argv(vmid, ["stat", "-c", "%u", "/etc/marker"])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "0\n"  # root inside, whatever the host ids are
        pid = lxcapi.init_pid(vmid)
        host_uid = Path(f"/proc/{pid}/root/etc/marker").stat().st_uid
        assert host_uid == (100000 if unprivileged == "1" else 0)
    finally:
        lifecycle.stop(vmid, log=lambda _line: None)
