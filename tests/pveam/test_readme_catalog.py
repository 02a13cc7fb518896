"""The README's own-catalog recipe, run command by command, so that it cannot drift.

The block after ``<!-- recipe: own-catalog -->`` is turned into a bash script: ``/srv/ct`` and
``/root`` become scratch directories, ``ct.example.org:8080`` a free port on 127.0.0.1, and
after a line started in the background the script waits for the port. Everything runs under a
scratch CTKIT_ROOT with the venv's console scripts first on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.index.test_catalog import make_template
from tests.ports import free_port
from tests.pveam.conftest import Pveam, template_cache

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- recipe: own-catalog -->"
TEMPLATE = "debian-12-standard_12.12-1_amd64.tar.zst"


def recipe_lines() -> list[str]:
    text = README.read_text()
    block = text.split(MARKER, 1)[1].split("```", 2)[1]
    return [ln[2:] for ln in block.splitlines() if ln.startswith("# ")]


def script(lines: list[str], srv_dir: Path, home: Path, port: int) -> str:
    out = ["set -euo pipefail"]
    for line in lines:
        line = line.replace("/srv/ct", str(srv_dir)).replace("/root", str(home))
        line = line.replace("ct.example.org:8080", f"127.0.0.1:{port}")
        line = line.replace("http.server 8080", f"http.server {port}")
        line = line.replace("ct.example.org", "127.0.0.1")
        out.append(f"echo {shlex.quote('>>> ' + line)}")
        out.append(line)
        if re.search(r"&\s*(#.*)?$", line):
            out.append(
                f"for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null "
                "&& break; sleep 0.1; done"
            )
    return "\n".join(out) + "\n"


def test_own_catalog_recipe_runs_as_written(pveam: Pveam, tmp_path: Path) -> None:
    lines = recipe_lines()
    assert [ln.split()[1] for ln in lines if ln.startswith("pveam ")] == [
        "key", "index", "index", "source", "source", "update", "available", "download",
    ]  # fmt: skip
    # gpg-agent's sockets live in GNUPGHOME and a socket path may not exceed 107 bytes, which a
    # deep pytest temp dir does under xdist: the publisher's home is a short one in /tmp
    srv_dir, home = tmp_path / "srv-ct", Path(tempfile.mkdtemp(prefix="ctk-home-", dir="/tmp"))
    srv_dir.mkdir()
    make_template(srv_dir / TEMPLATE)
    port = free_port()
    env = pveam.env({"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    env.pop("GNUPGHOME", None)
    log = tmp_path / "recipe.log"
    with open(log, "w") as sink:  # a file, not a pipe: the background server keeps its end
        proc = subprocess.Popen(
            ["bash", "-c", script(lines, srv_dir, home, port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=240)
    finally:
        with_group = proc.pid
        try:
            os.killpg(with_group, signal.SIGTERM)  # the web server started in the background
        except ProcessLookupError:
            pass
        proc.wait()
        subprocess.run(
            ["gpgconf", "--homedir", str(home / "catalog-gnupg"), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "signature: good, by " in out and f"{TEMPLATE}: ok" in out
    assert "update successful" in out
    assert re.search(rf"^system\s+{re.escape(TEMPLATE)}\s+amd64$", out, re.M), out
    assert (template_cache() / TEMPLATE).read_bytes() == (srv_dir / TEMPLATE).read_bytes()
