"""Run a verification job (``vzdump.jobs.verify``): pick the backups, check each, notify.

Each checked backup is one row of the job's result (the backup engine's :class:`JobResult`, so
the notification, the JSON summary and the scheduler's bookkeeping treat both kinds of job
alike). A restore test runs the ``pct restore-test`` command beside this program: restoring is
pct's job and vzdump never imports pct.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared import signals
from shared.backups.inventory import BackupRow, list_backup_rows
from shared.backups.locate import locate
from shared.backups.sidecar import read_all
from shared.backups.verify import verify
from shared.errors import CommandError, CtkitError, VerifyError
from shared.parentdeath import tied_to_parent

from . import notify, options
from .report import GuestResult, JobResult

DAY = 86400
RESTORE_TEST_TIMEOUT = 3600
# seconds a stopped restore test gets to destroy its container (within systemd's default
# 90 s for a unit's stop: the scheduler's service TERMs it itself)
RESTORE_TEST_STOP_WAIT = 60.0


def select(rows: Sequence[BackupRow], params: Mapping[str, Any], now: float) -> list[BackupRow]:
    """The backups this run checks, oldest guest id first."""
    vmids = set(params.get("vmid") or [])
    chosen = [r for r in rows if not vmids or r.entry.vmid in vmids]
    if params.get("select") == "newest":
        newest: dict[int | None, BackupRow] = {}
        for row in chosen:
            best = newest.get(row.entry.vmid)
            if best is None or (row.entry.ctime or 0) > (best.entry.ctime or 0):
                newest[row.entry.vmid] = row
        chosen = list(newest.values())
    days = params.get("outdated-after")
    if days is not None:
        chosen = [r for r in chosen if not _recently_ok(r, params["mode"], now - int(days) * DAY)]
    return sorted(chosen, key=lambda r: (r.entry.vmid or 0, r.entry.ctime or 0))


def _recently_ok(row: BackupRow, mode: str, since: float) -> bool:
    return any(
        v.kind == mode and v.state == "ok" and v.time >= since for v in read_all(row.entry.path)
    )


def pct_command() -> str:
    """The ``pct`` installed beside this program (the same environment), else the one on PATH."""
    here = Path(sys.argv[0]).resolve().parent / "pct"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("pct")
    if found is None:
        raise CommandError("unable to find the 'pct' command for the restore test")
    return found


def restore_test(volid: str, params: Mapping[str, Any]) -> list[str]:
    argv = [pct_command(), "restore-test", volid]
    argv += ["--storage", str(params.get("target-storage") or "local")]
    if params.get("vmid-range"):
        argv += ["--vmid-range", str(params["vmid-range"])]
    if params.get("check"):
        argv += ["--check", str(params["check"])]
    # it ends with this program (a kill -9 of the job too) and cleans up on TERM: interrupted,
    # timed out or orphaned, it destroyed nothing, and went on to record an outcome for a job
    # that was gone
    with subprocess.Popen(
        tied_to_parent(argv, "TERM"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = signals.communicate(
                proc, timeout=RESTORE_TEST_TIMEOUT, stop_wait=RESTORE_TEST_STOP_WAIT
            )
        except subprocess.TimeoutExpired:
            raise VerifyError(f"restore test of '{volid}' timed out") from None
    lines = (out + err).splitlines()
    if proc.returncode != 0:
        raise VerifyError(lines[-1] if lines else f"pct restore-test exit code {proc.returncode}")
    return lines


def check_one(row: BackupRow, params: Mapping[str, Any]) -> GuestResult:
    e = row.entry
    started = time.monotonic()
    out = GuestResult(e.vmid or 0, e.name, "ok", 0.0, size=e.size, filename=e.name)
    try:
        if params.get("mode") == "restore-test":
            out.log_lines = restore_test(e.volid, params)
        else:
            report = verify(locate(e.volid))
            out.log_lines = [f"verified: {report.members} members, {report.tar_bytes} bytes"]
    except CtkitError as err:
        out.status, out.error = "err", str(err)
        out.log_lines.append(f"ERROR: {err}")
    out.seconds = time.monotonic() - started
    return out


def run(job_id: str, params: Mapping[str, Any]) -> JobResult:
    """Run the verification job ``job_id`` and deliver its notification."""
    started = time.time()
    mode = params.get("mode", "verify")
    result = JobResult(job_id, f"vzdump verify job {job_id} ({mode})", started, started)
    try:
        rows = select(list_backup_rows(str(params["storage"])), params, started)
        result.job_log.append(f"checking {len(rows)} backup(s) on '{params['storage']}' ({mode})")
        result.guests = [check_one(row, params) for row in rows]
    except CtkitError as err:
        result.error = str(err)
    result.finished = time.time()
    deliver(result, params)
    return result


def warn(message: str) -> None:
    print(f"WARN: {message}", file=sys.stderr)


def deliver(result: JobResult, params: Mapping[str, Any]) -> None:
    """Summary, mail and webhook through the backup notification's own pieces."""
    host = notify.host_fqdn()
    status = "verification successful" if result.ok else "verification failed"
    if result.error:
        status += f": {result.error.splitlines()[0]}"
    subject = f"vzdump verify status ({host}): {status}"
    body = notify.render_body(result)
    data = notify.summary(result, fqdn=host, subject_line=subject, body=body, now=time.time())
    data["type"] = "vzdump-verify"
    try:
        notify.write_summary(data, result.job_id)
    except OSError as err:
        warn(f"unable to write notification summary - {err}")
    mail = options.BackupOptions.from_values(
        {
            "mailto": notify.mail_recipients(params.get("mailto")),
            "mailnotification": params.get("mailnotification") or "failure",
            "notification-mode": params.get("notification-mode"),
        }
    )
    recipients = notify.mail_targets(mail, result)
    if recipients:
        try:
            notify.send_mail(recipients, subject, body)
        except CommandError as err:
            warn(f"sending notification mail failed - {err}")
    url = params.get("notify-webhook")
    if url:
        try:
            notify.post_webhook(str(url), data)
        except notify.WebhookError as err:
            warn(f"notification webhook '{notify.redact_url(str(url))}' failed - {err}")
