"""Fixtures for the job CLI tests: the real ``vzdump``/``pct`` console scripts run as
subprocesses under the test's CTKIT_ROOT, a controllable scheduler clock, containers made with
``pct create``, and the throw-away local mail user of the notification tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.storage.api import volume_path
from shared.testbed import stop_containers
from tests.vzdump.test_notify import MAIL_USER, mail_user, wait_for_mail

__all__ = ["MAIL_USER", "mail_user", "wait_for_mail"]

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv/bin"
VZDUMP = BIN / "vzdump"
# the test clock hook of vzdump/commands/jobs.py
NOW_ENV = "CTKIT_SCHEDULER_NOW"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@dataclass
class Cli:
    """Runs the real console scripts with CTKIT_ROOT (set by ``ctroot``) and TZ=UTC, so that
    the times ``job list`` prints are the same on every host."""

    root: Path

    def env(self, now: str | None) -> dict[str, str]:
        env = {**os.environ, "TZ": "UTC", "CTKIT_ROOT": str(self.root)}
        env.pop(NOW_ENV, None)
        if now is not None:
            env[NOW_ENV] = now
        return env

    def run(self, prog: str, *args: str, now: str | None = None, timeout: float = 180) -> Result:
        proc = subprocess.run(
            [str(BIN / prog), *args],
            env=self.env(now),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def vzdump(self, *args: str, now: str | None = None, timeout: float = 180) -> Result:
        return self.run("vzdump", *args, now=now, timeout=timeout)

    def ok(self, *args: str, now: str | None = None) -> Result:
        """``vzdump <args>`` that must succeed."""
        res = self.vzdump(*args, now=now)
        assert res.rc == 0, f"vzdump {' '.join(args)} -> {res.rc}\n{res.out}\n{res.err}"
        return res

    def pct(self, *args: str) -> str:
        res = self.run("pct", *args)
        assert res.rc == 0, f"pct {' '.join(args)} -> {res.rc}: {res.err}"
        return res.out

    # --- reading results back -------------------------------------------------------------

    @property
    def jobs_cfg(self) -> Path:
        return self.root / "etc/pve/jobs.cfg"

    @property
    def dumpdir(self) -> Path:
        """Storage ``local``'s dump directory (no storage.cfg: the default dir storage)."""
        return self.root / "var/lib/vz/dump"

    def state_path(self, job_id: str) -> Path:
        return self.root / f"var/lib/pve-manager/jobs/vzdump-{job_id}.json"

    def state(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path(job_id).read_text())
        return data

    def summary(self, job_id: str) -> dict[str, Any]:
        path = self.root / f"var/lib/pve-manager/jobs/vzdump-{job_id}.notification.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def job_list(self, now: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            self.ok("job", "list", "--output-format", "json", now=now).out
        )
        return rows

    def archives(self, vmid: int) -> list[Path]:
        if not self.dumpdir.is_dir():
            return []
        pat = re.compile(rf"vzdump-lxc-{vmid}-\d{{4}}(_\d\d){{2}}-\d\d(_\d\d){{2}}\.tar\.zst")
        return sorted(p for p in self.dumpdir.iterdir() if pat.fullmatch(p.name))


@pytest.fixture
def cli(ctroot: Path) -> Cli:
    return Cli(ctroot)


@dataclass
class Guest:
    vmid: int
    root: Path

    def rootfs(self) -> Path:
        """The host directory of the CT's root volume (``local:0`` is a plain directory)."""
        conf = (self.root / f"etc/pve/lxc/{self.vmid}.conf").read_text()
        volid = re.search(r"^rootfs: ([^,\n]+)", conf, re.M)
        assert volid, conf
        return volume_path(volid.group(1))


@pytest.fixture
def make_guest(cli: Cli, debian_template: Path) -> Iterator[Callable[[int, bool], Guest]]:
    """``make_guest(vmid, start)``: a CT from the session's Debian-like busybox template,
    created (and started) with the real ``pct``; stopped again after the test."""

    def make(vmid: int, start: bool = True) -> Guest:
        cli.pct("create", str(vmid), str(debian_template), "--rootfs", "local:0",
                "--hostname", f"web{vmid % 1000}")  # fmt: skip
        if start:
            cli.pct("start", str(vmid))
        return Guest(vmid, cli.root)

    try:
        yield make
    finally:
        stop_containers(cli.root)
