"""Jobs that really run, through the console script: ``vzdump job run`` against a running
container (archive, state file, JSON summary), ``vzdump scheduler run-due`` driven by the test
clock (due, not due, disabled), and the notification mail through the local exim."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vzdump import notify

from .conftest import MAIL_USER, Cli, Guest, wait_for_mail

pytestmark = pytest.mark.lxc

MARKER = "ctkit job test marker\n"


def tar_names(archive: Path) -> list[str]:
    out = subprocess.run(
        ["tar", "-tf", str(archive)], check=True, capture_output=True, text=True
    ).stdout
    return out.splitlines()


def tar_member(archive: Path, name: str) -> str:
    return subprocess.run(
        ["tar", "-xOf", str(archive), name, "--occurrence"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def archive_time(archive: Path) -> float:
    """The start time in an archive name (``..-YYYY_MM_DD-HH_MM_SS.tar.zst``, local = UTC)."""
    m = re.search(r"-(\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d)\.tar\.zst$", archive.name)
    assert m, archive.name
    return dt.datetime.strptime(m.group(1), "%Y_%m_%d-%H_%M_%S").replace(tzinfo=dt.UTC).timestamp()


def marked_guest(make_guest: Callable[[int, bool], Guest], vmid: int) -> Guest:
    """A running CT with a known file on its root file system."""
    guest = make_guest(vmid, True)
    (guest.rootfs() / "root/marker.txt").write_text(MARKER)
    return guest


def check_archive(cli: Cli, vmid: int, archive: Path, before: float, after: float) -> None:
    """Name, place and content of a finished backup of ``vmid``."""
    assert archive.parent == cli.dumpdir
    assert before - 1 <= archive_time(archive) <= after
    names = tar_names(archive)
    assert names[:2] == ["./etc/vzdump/pct.conf", "./etc/vzdump/pct.fw"]
    assert "./root/marker.txt" in names
    assert tar_member(archive, "./root/marker.txt") == MARKER
    assert "hostname: web" in tar_member(archive, "./etc/vzdump/pct.conf")
    assert not list(cli.dumpdir.glob("*.dat"))
    log = archive.with_name(archive.name.replace(".tar.zst", ".log"))
    assert "INFO: Finished Backup of VM" in log.read_text()


# --- vzdump job run ---------------------------------------------------------------------------


def test_job_run_backs_up_a_running_container(
    cli: Cli, make_guest: Callable[[int, bool], Guest], vmid: int
) -> None:
    marked_guest(make_guest, vmid)
    cli.ok("job", "add", "nightly", "--schedule", "02:00", "--vmid", str(vmid),
           "--compress", "zstd", "--storage", "local")  # fmt: skip
    before = time.time()
    res = cli.vzdump("job", "run", "nightly")
    after = time.time()
    assert res.rc == 0, res.err
    assert "INFO: Backup job finished successfully" in res.err_lines
    assert res.err_lines[-1] == "job 'nightly': finished - OK"
    assert res.err_lines[1] == (
        f"INFO: starting new backup job: vzdump {vmid} --compress zstd --storage local "
        "--job-id nightly --quiet 1"
    )
    (archive,) = cli.archives(vmid)
    check_archive(cli, vmid, archive, before, after)
    assert cli.pct("status", str(vmid)).strip() == "status: running"  # still (again) running

    state = cli.state("nightly")
    assert (state["state"], state["msg"]) == ("stopped", "OK")
    assert int(before) <= state["started"] <= state["finished"] <= after
    assert re.fullmatch(r"UPID:[^:]+:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzdump:nightly:root@pam:",
                        state["upid"])  # fmt: skip
    (row,) = cli.job_list()
    assert (row["last-run"], row["result"], row["state"]) == (state["started"], "OK", "stopped")
    nxt = dt.datetime.fromtimestamp(row["next-run"], dt.UTC)
    assert (nxt.hour, nxt.minute) == (2, 0) and 0 < row["next-run"] - state["started"] <= 86400

    summary = cli.summary("nightly")
    assert (summary["job-id"], summary["severity"]) == ("nightly", "info")
    assert summary["subject"] == f"vzdump backup status ({notify.host_fqdn()}): backup successful"
    result = summary["result"]
    assert (result["status"], result["error"]) == ("ok", None)
    (guest,) = result["guests"]
    assert (guest["vmid"], guest["status"], guest["name"]) == (vmid, "ok", f"web{vmid % 1000}")
    assert (guest["filename"], guest["size"]) == (str(archive), archive.stat().st_size)
    assert f"{vmid}: INFO: Finished Backup of VM {vmid}" in summary["body"]


def test_job_with_a_missing_guest_reports_job_errors(
    cli: Cli, make_guest: Callable[[int, bool], Guest], new_vmid: Callable[[], int]
) -> None:
    good, missing = new_vmid(), new_vmid()
    marked_guest(make_guest, good)
    cli.ok("job", "add", "mixed", "--schedule", "daily", "--vmid", f"{good},{missing}",
           "--mode", "stop", "--compress", "zstd")  # fmt: skip
    before = time.time()
    res = cli.vzdump("job", "run", "mixed")
    after = time.time()
    assert res.rc == 13, res.err
    assert f"ERROR: Backup of VM {missing} failed - unable to find VM '{missing}'" in res.err_lines
    assert "INFO: Backup job finished with errors" in res.err_lines
    assert res.err_lines[-1] == "job errors"
    (archive,) = cli.archives(good)  # the other guest is still backed up
    check_archive(cli, good, archive, before, after)
    assert cli.archives(missing) == []
    state = cli.state("mixed")
    assert (state["state"], state["msg"]) == ("stopped", "job errors")
    summary = cli.summary("mixed")
    assert summary["severity"] == "error"
    assert summary["subject"].endswith(": backup failed")
    assert [(g["vmid"], g["status"]) for g in summary["result"]["guests"]] == [
        (good, "ok"), (missing, "err"),
    ]  # fmt: skip


# --- vzdump scheduler run-due with the test clock ---------------------------------------------

ADDED = "2030-01-05T10:00:00"  # TZ=UTC in every subprocess


def epoch(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp())


def test_run_due_runs_only_due_enabled_jobs(
    cli: Cli, make_guest: Callable[[int, bool], Guest], vmid: int
) -> None:
    marked_guest(make_guest, vmid)
    for job_id in ("daily2", "off"):
        cli.ok("job", "add", job_id, "--schedule", "02:00", "--vmid", str(vmid),
               "--compress", "zstd", now=ADDED)  # fmt: skip
    cli.ok("job", "set", "off", "--enabled", "0", now=ADDED)

    # not due yet: nothing runs, the states stay as created
    res = cli.ok("scheduler", "run-due", now="2030-01-06T01:59:30")
    assert res.out == "daily2: not-due\noff: disabled\n"
    assert cli.archives(vmid) == []
    assert cli.state("daily2") == {"state": "created", "time": epoch(ADDED)}

    # due: the job runs for real, once
    due = "2030-01-06T02:00:20"
    before = time.time()
    res = cli.ok("scheduler", "run-due", now=due)
    after = time.time()
    assert res.out == "daily2: ok\noff: disabled\n", res.err
    assert "job 'daily2': finished - OK" in res.err_lines
    (archive,) = cli.archives(vmid)
    check_archive(cli, vmid, archive, before, after)
    state = cli.state("daily2")
    assert (state["state"], state["msg"], state["started"]) == ("stopped", "OK", epoch(due))
    assert "started" not in cli.state("off")

    # the same minute again, and a minute later: not due until tomorrow's 02:00
    for now in (due, "2030-01-06T02:01:20"):
        assert cli.ok("scheduler", "run-due", now=now).out == "daily2: not-due\noff: disabled\n"
    assert len(cli.archives(vmid)) == 1
    rows = {r["id"]: r for r in cli.job_list(now="2030-01-06T02:01:20")}
    assert (rows["daily2"]["last-run"], rows["daily2"]["next-run"]) == (
        epoch(due), epoch("2030-01-07T02:00:00"),
    )  # fmt: skip
    assert (rows["off"]["last-run"], rows["off"]["next-run"]) == (None, None)


def test_run_due_skips_missed_runs_on_first_pass(
    cli: Cli, make_guest: Callable[[int, bool], Guest], vmid: int
) -> None:
    """Days after the last event with ``repeat-missed 0``: the first pass runs nothing and
    counts from now; with ``repeat-missed 1`` the job catches up once."""
    marked_guest(make_guest, vmid)
    for job_id, repeat in (("lazy", "0"), ("eager", "1")):
        cli.ok("job", "add", job_id, "--schedule", "02:00", "--vmid", str(vmid),
               "--compress", "zstd", "--repeat-missed", repeat, now=ADDED)  # fmt: skip
    later = "2030-01-09T12:00:00"
    res = cli.ok("scheduler", "run-due", "--first-pass", now=later)
    assert res.out == "eager: ok\nlazy: missed\n", res.err
    skipped = "job 'lazy': skipping missed run(s) since 2030-01-06 02:00:00 (repeat-missed is off)"
    assert skipped in res.err_lines
    assert len(cli.archives(vmid)) == 1
    assert cli.state("lazy") == {"state": "created", "time": epoch(ADDED), "updated": epoch(later)}
    assert cli.state("eager")["started"] == epoch(later)


def test_run_due_exits_13_when_a_job_failed(cli: Cli, new_vmid: Callable[[], int]) -> None:
    """A failed job makes the pass exit non-zero, so the scheduler's unit shows it failed."""
    cli.ok("job", "add", "gone", "--schedule", "02:00", "--vmid", str(new_vmid()), now=ADDED)
    res = cli.vzdump("scheduler", "run-due", now="2030-01-06T02:00:20")
    assert res.rc == 13, res.err
    assert res.out == "gone: failed\n"
    assert res.err_lines[-1] == "job(s) failed: gone"
    assert cli.state("gone")["msg"] == "job errors"


# --- mail through the local exim --------------------------------------------------------------


def test_job_notification_mail_reaches_a_local_mailbox(
    cli: Cli, make_guest: Callable[[int, bool], Guest], vmid: int, mail_user: Path
) -> None:
    marked_guest(make_guest, vmid)
    cli.ok("job", "add", "mailed", "--schedule", "daily", "--vmid", str(vmid),
           "--compress", "zstd", "--mailto", f"{MAIL_USER}@pam")  # fmt: skip
    res = cli.vzdump("job", "run", "mailed")
    assert res.rc == 0, res.err
    assert not [line for line in res.err_lines if line.startswith("WARN:")], res.err
    (archive,) = cli.archives(vmid)

    (msg,) = wait_for_mail(mail_user, 1)
    assert msg["Subject"] == f"vzdump backup status ({notify.host_fqdn()}): backup successful"
    body = msg.get_content()
    assert body == cli.summary("mailed")["body"]
    lines = body.splitlines()
    assert lines[:2] == ["Details", "======="]
    assert re.fullmatch(r"VMID\s+Name\s+Status\s+Time\s+Size\s+Filename", lines[2])
    row = lines[3].split()
    assert row[:3] == [str(vmid), f"web{vmid % 1000}", "ok"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", row[3]) and row[-1] == str(archive)
    assert lines[4].startswith("Total running time: ")
    assert lines[5] == f"Total size: {notify.human_bytes(archive.stat().st_size)}"
    assert f"{vmid}: INFO: Finished Backup of VM {vmid} " in body
