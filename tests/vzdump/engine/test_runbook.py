"""The README's recovery runbook, run as written: a container's backup on a surviving disk,
a new host (a fresh root) that knows nothing of the old one, and every command of the
runbook's block, with the paths of this scratch root substituted. The restored container
starts and holds the data the old one had."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from shared.testbed import cleanup_root

from .conftest import BIN, Host, only_archive, pct, vzdump

pytestmark = pytest.mark.lxc

README = Path(__file__).resolve().parents[3] / "README.md"
EXAMPLE_ARCHIVE = "vzdump-lxc-101-2026_11_30-01_00_00.tar.zst"
NOT_HERE = ("make install", "mount ")  # the install is this checkout; the disk is a directory


def runbook_script() -> str:
    """The commands of the README's runbook block (``# `` lines and their here-documents)."""
    text = README.read_text()
    block = text.split("<!-- runbook -->\n```\n", 1)[1].split("```\n<!-- /runbook -->", 1)[0]
    script, heredoc = [], False
    for line in block.splitlines():
        if heredoc:
            script.append(line)
            heredoc = line != "EOF"
        elif line.startswith("# "):
            command = line[2:].split("  #", 1)[0].rstrip()
            if not command.startswith(NOT_HERE):
                script.append(command)
            heredoc = "<<'EOF'" in command
    return "\n".join(script) + "\n"


def test_runbook_commands_are_what_the_test_runs() -> None:
    script = runbook_script()
    assert "vzdump list backup" in script and "pct restore 101" in script
    assert "dir: backup\n\tpath /mnt/backup\n\tcontent backup\nEOF\n" in script


def test_runbook_restores_a_lost_hosts_container(host: Host, tmp_path: Path) -> None:
    new = host.root / "newhost"  # the new host's root; the surviving disk is its /mnt/backup
    disk = new / "mnt/backup"
    (disk / "dump").mkdir(parents=True)
    for directory in (new, new / "mnt", disk):
        directory.chmod(0o755)
    ct = host.create()
    ct.write("root/important.txt", b"what the old host held\n")
    args = ["--mode", "stop", "--compress", "zstd", "--dumpdir", str(disk / "dump")]
    res = vzdump(str(ct.vmid), *args)
    assert res.rc == 0, res.err
    archive = only_archive(disk / "dump", ct.vmid)
    pct("destroy", str(ct.vmid))  # the old host is gone
    script = runbook_script().replace("/etc/pve", f"{new}/etc/pve")  # never the host's own
    script = re.sub(r"\b101\b", str(ct.vmid), script.replace(EXAMPLE_ARCHIVE, archive.name))
    env = {**os.environ, "CTKIT_ROOT": str(new), "PATH": f"{BIN}:{os.environ['PATH']}"}
    try:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.rstrip().endswith("what the old host held"), proc.stdout
        assert f"backup:backup/{archive.name}" in proc.stdout  # vzdump list showed it
        assert (new / f"etc/pve/lxc/{ct.vmid}.conf").exists()
    finally:
        subprocess.run(
            [str(BIN / "pct"), "stop", str(ct.vmid)], env=env, capture_output=True, check=False
        )
        cleanup_root(new)
