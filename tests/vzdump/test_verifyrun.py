"""Verification jobs: a ``verify`` section of jobs.cfg run by ``vzdump scheduler run-due``
checks the selected backups, records each result and mails the failure through the local
exim (real MTA, throw-away local user)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import paths
from shared.backups.inventory import list_backup_rows
from shared.backups.sidecar import Verification, now, record, sidecar_path
from tests.shared.backups.conftest import make_backup
from tests.vzdump.engine.conftest import BIN, Host, host
from tests.vzdump.test_notify import wait_for_mail
from vzdump import notify
from vzdump.jobs.config import parse_jobs
from vzdump.verifyrun import select

__all__ = ["host"]

MAIL_USER = "ctkit-mailverify"  # our own: other test modules use theirs at the same time
JOBS = """verify: nightly-check
\tschedule 02:00
\tstorage local
\tselect newest
\tmailto {user}@pam
"""


@pytest.fixture
def mail_user() -> Iterator[Path]:
    if os.geteuid() != 0 or not Path(notify.SENDMAIL).exists() or not shutil.which("useradd"):
        pytest.skip("needs root, /usr/sbin/sendmail (exim4) and useradd")
    mbox = Path("/var/mail") / MAIL_USER
    home = Path(tempfile.mkdtemp(prefix=f"{MAIL_USER}.", dir="/var/tmp"))
    subprocess.run(["userdel", MAIL_USER], capture_output=True, check=False)
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", str(home),
             "--shell", "/usr/sbin/nologin", MAIL_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        shutil.chown(home, user=MAIL_USER)  # exim delivers from the user's home
        mbox.unlink(missing_ok=True)
        yield mbox
    finally:
        queued = subprocess.run(
            ["exiqgrep", "-i", "-r", MAIL_USER], capture_output=True, text=True, check=False
        ).stdout.split()
        for msgid in queued:
            subprocess.run(["exim4", "-Mrm", msgid], capture_output=True, check=False)
        mbox.unlink(missing_ok=True)
        subprocess.run(["userdel", MAIL_USER], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_jobs_cfg_round_trips_a_verify_section() -> None:
    text = JOBS.format(user="root") + "\toutdated-after 7\n\tmode restore-test\n"
    cfg = parse_jobs(text, strict=True)
    assert cfg.render() == text
    with pytest.raises(Exception, match="mode"):
        parse_jobs(text.replace("restore-test", "bogus"), strict=True)


def _run_due(when: str, rc: int = 0) -> str:
    env = {**os.environ, "CTKIT_SCHEDULER_NOW": when}
    proc = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv/bin/vzdump"), "scheduler", "run-due"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == rc, proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.lxc
def test_verify_job_from_run_due_mails_on_failure(host: Host, mail_user: Path) -> None:
    good = make_backup(host)
    bad = make_backup(host)
    data = bytearray(bad.archive.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)
    bad.archive.write_bytes(bytes(data))
    paths.jobs_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.jobs_cfg().write_text(JOBS.format(user=MAIL_USER))
    assert "nightly-check: not-due" in _run_due("2030-01-01T01:00:00")
    out = _run_due("2030-01-01T02:00:30", rc=13)  # a failed job fails the pass
    assert "nightly-check: failed" in out, out
    (msg,) = wait_for_mail(mail_user, 1)
    assert "verify status" in msg["Subject"] and "verification failed" in msg["Subject"]
    body = msg.get_content()
    assert bad.archive.name in body and good.archive.name in body
    assert json.loads(sidecar_path(good.archive).read_text())["verify"]["state"] == "ok"
    assert json.loads(sidecar_path(bad.archive).read_text())["verify"]["state"] == "failed"
    summary = json.loads((paths.jobs_state_dir() / "vzdump-nightly-check.notification.json")
                         .read_text())  # fmt: skip
    assert summary["type"] == "vzdump-verify" and summary["severity"] == "error"


def test_selection_newest_and_outdated(host: Host) -> None:
    a = make_backup(host)
    rows = list_backup_rows("local")
    assert [r.entry.volid for r in select(rows, {"mode": "verify"}, now())] == [a.volid]
    record(a.archive, Verification("verify", "ok", now()))
    rows = list_backup_rows("local")
    params = {"mode": "verify", "outdated-after": 1}
    assert select(rows, params, now()) == []
    assert len(select(rows, {"mode": "restore-test", "outdated-after": 1}, now())) == 1
    assert len(select(rows, params, now() + 2 * 86400)) == 1


@pytest.mark.lxc
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "interrupt"])
def test_a_restore_test_ends_with_its_job(host: Host, sig: int) -> None:
    """A kill -9 of ``vzdump job run`` left its ``pct restore-test`` running on its own: it
    went on to check, destroy and record an 'ok' for a job that was gone. A Ctrl-C killed it
    outright and its container stayed, running the check. Now the restore test is stopped
    with the job, and cleans up first."""
    from tests.pct.conftest import live_pids, wait_for
    from tests.pct.ops.test_restoretest import _nothing_left

    made = make_backup(host)
    first = host.new_vmid()
    paths.jobs_cfg().parent.mkdir(parents=True, exist_ok=True)
    paths.jobs_cfg().write_text(
        "verify: rt\n\tschedule 02:00\n\tstorage local\n\tmode restore-test\n"
        f"\tvmid-range {first}-{first}\n\tcheck sleep 60\n"
    )
    argv = [str(BIN / "vzdump"), "job", "run", "rt"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    volid = made.volid.encode()
    try:
        # the check runs in the started copy
        assert wait_for(lambda: live_pids(lambda args: args[:2] == [b"sleep", b"60"]), 120)
        os.kill(proc.pid, sig)  # the job alone
        proc.communicate(timeout=180)
        # well before the check would have ended on its own
        assert wait_for(lambda: not live_pids(lambda args: volid in args), 40)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _nothing_left(host.root, first)
    recorded = sidecar_path(made.archive)
    assert not recorded.exists() or "restore-test" not in json.loads(recorded.read_text())
