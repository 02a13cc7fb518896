"""``vzdump job add/set/list/remove`` through the real console script: validation messages,
jobs.cfg bytes against golden files, the listing in text and JSON, concurrent edits, and
``vzdump timer install/remove``. No container is started here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, VZDUMP, Cli

GOLDEN = Path(__file__).parent / "golden"
T0 = "2030-01-05T10:00:00"  # a Saturday, after 02:00 (TZ=UTC in every subprocess)
T0_EPOCH = 1893837600

NIGHTLY = [
    "job", "add", "nightly", "--schedule", "sat 02:00", "--all", "1", "--exclude", "900000001",
    "--mode", "snapshot", "--compress", "zstd", "--storage", "local",
    "--prune-backups", "keep-daily=7,keep-last=3", "--notes-template", "{{guestname}}",
    "--comment", "nightly CTs: all",
]  # fmt: skip
# single-dash options and a bare boolean, as Proxmox's CLI takes them
WEEKLY = [
    "job", "add", "weekly", "-schedule", "mon..fri 22:30", "-vmid", "100,101",
    "-exclude-path", "/var/cache", "-exclude-path", "/tmp/*", "-mailto", "root@pam",
    "-mailnotification", "failure", "-repeat-missed",
]  # fmt: skip


def param_errors(err: str) -> list[str]:
    """The ``<param>: <message>`` lines of a ``400 Parameter verification failed.`` answer."""
    lines = err.splitlines()
    assert "400 Parameter verification failed." in lines, err
    start = lines.index("400 Parameter verification failed.") + 1
    return [line for line in lines[start:] if not line.startswith("vzdump job ")]


def add_two(cli: Cli) -> None:
    cli.ok(*NIGHTLY, now=T0)
    cli.ok(*WEEKLY, now=T0)


# --- add: validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "errors"),
    [
        (
            ["--schedule", "sat 25:00", "--all", "1"],
            ["schedule: value 'sat 25:00' is not a valid calendar event: "
             "hour 25 out of range 0..23"],
        ),
        (
            ["--schedule", "mon..fry 02:00", "--all", "1"],
            ["schedule: value 'mon..fry 02:00' is not a valid calendar event: "
             "unknown weekday 'fry'"],
        ),
        (
            ["--schedule", "daily", "--all", "1", "--frobnicate", "3"],
            ["frobnicate: property is not defined in schema and the schema does not allow "
             "additional properties"],
        ),
        (
            ["--schedule", "daily", "--all", "1", "--stdout", "1"],  # not a job option
            ["stdout: property is not defined in schema and the schema does not allow "
             "additional properties"],
        ),
        (
            ["--stdout", "--schedule", "daily", "--all"],  # a vzdump flag, not a job option
            ["stdout: property is not defined in schema and the schema does not allow "
             "additional properties"],
        ),
        (["--all", "1"], ["schedule: property is missing and it is not optional"]),
        (
            ["--schedule", "daily", "--all", "1", "--mode", "bogus"],
            ["mode: value 'bogus' does not have a value in the enumeration "
             "'snapshot, suspend, stop'"],
        ),
        (["--schedule", "daily"], ["vmid: property is missing"]),
        (
            ["--schedule", "daily", "--vmid", "100", "--all"],
            ["all: option conflicts with option 'vmid'"],
        ),
    ],
    ids=["bad-hour", "bad-weekday", "unknown", "stdout", "stdout-flag", "no-schedule", "bad-mode",
         "no-guests", "conflict"],
)  # fmt: skip
def test_add_rejects_bad_parameters(cli: Cli, args: list[str], errors: list[str]) -> None:
    res = cli.vzdump("job", "add", "j1", *args)
    assert res.rc == 2, res.err
    assert param_errors(res.err) == errors
    assert "Traceback" not in res.err
    assert not cli.jobs_cfg.exists()
    assert not cli.state_path("j1").exists()


def test_add_and_set_take_proxmox_s_deprecated_starttime_and_dow(cli: Cli) -> None:
    """Scripts written for Proxmox's older API: the pair becomes the schedule, as there."""
    cli.ok("job", "add", "j1", "--starttime", "02:30", "--dow", "sat,mon", "--all", "1", now=T0)
    cli.ok("job", "add", "j2", "--starttime", "2:5", "--dow", "mon,tue,wed,thu,fri,sat,sun",
           "--vmid", "100", now=T0)  # fmt: skip
    assert cli.jobs_cfg.read_text() == (
        "vzdump: j1\n\tschedule mon,sat 02:30\n\tall 1\n\nvzdump: j2\n\tschedule 2:5\n\tvmid 100\n"
    )
    cli.ok("job", "set", "j1", "--starttime", "03:15", now=T0)  # no dow: every day
    assert "vzdump: j1\n\tschedule 03:15\n\tall 1\n" in cli.jobs_cfg.read_text()


@pytest.mark.parametrize(
    ("args", "errors"),
    [
        (["--starttime", "02:00", "--schedule", "daily"],
         ["starttime: 'starttime' and 'schedule' cannot both be set"]),
        (["--dow", "sat", "--schedule", "daily"],
         ["starttime: missing property required by 'dow'"]),
        (["--starttime", "2am"], ["starttime: value does not match the regex pattern"]),
        (["--starttime", "02:00", "--dow", "someday"],
         ["dow: unable to parse day of week 'someday'"]),
        (["--starttime", "25:00"],
         ["schedule: value '25:00' is not a valid calendar event: hour 25 out of range 0..23"]),
    ],
    ids=["both", "dow-alone", "bad-time", "bad-day", "bad-hour"],
)  # fmt: skip
def test_add_rejects_bad_starttime_and_dow(cli: Cli, args: list[str], errors: list[str]) -> None:
    res = cli.vzdump("job", "add", "j1", *args, "--all", "1")
    assert res.rc == 2 and param_errors(res.err) == errors, res.err
    assert not cli.jobs_cfg.exists()


def test_add_rejects_a_bad_id_and_positional_words(cli: Cli) -> None:
    res = cli.vzdump("job", "add", "a/b", "--all", "1")
    assert res.rc == 2
    assert param_errors(res.err) == [
        "id: invalid format - invalid configuration ID 'a/b'",
        "schedule: property is missing and it is not optional",
    ]
    res = cli.vzdump("job", "add", "j1", "--schedule", "daily", "100")
    assert (res.rc, res.err.splitlines()[0]) == (2, "400 too many arguments")
    assert not cli.jobs_cfg.exists()


def test_add_refuses_an_existing_id(cli: Cli) -> None:
    cli.ok("job", "add", "j1", "--schedule", "daily", "--all")
    before = cli.jobs_cfg.read_bytes()
    res = cli.vzdump("job", "add", "j1", "--schedule", "hourly", "--vmid", "100")
    assert (res.rc, res.err) == (4, "job 'j1' already exists\n")
    assert cli.jobs_cfg.read_bytes() == before


def test_a_value_with_a_line_break_never_adds_a_key(cli: Cli) -> None:
    """A Unicode line separator in a value became a 'script' line when jobs.cfg was read back:
    any program, run as root by the next job run."""
    cli.ok("job", "add", "j1", "--schedule", "daily", "--all")
    before = cli.jobs_cfg.read_bytes()
    evil = "/tmp/a\u2028\tscript /tmp/evil.sh"
    res = cli.vzdump("job", "add", "j2", "--schedule", "daily", "--all", "--exclude-path", evil)
    assert res.rc != 0
    assert res.err == "value of 'exclude-path' contains a line break or control character\n"
    res = cli.vzdump("job", "set", "j1", "--exclude-path", evil)
    assert res.rc != 0 and "contains a line break" in res.err
    assert cli.jobs_cfg.read_bytes() == before


# --- add / set: the file --------------------------------------------------------------------


def test_add_writes_proxmox_jobs_cfg(cli: Cli) -> None:
    add_two(cli)
    assert cli.jobs_cfg.read_bytes() == (GOLDEN / "jobs-added.cfg").read_bytes()
    # a new job's state counts its next event from its creation
    assert cli.state("nightly") == {"state": "created", "time": T0_EPOCH}


def test_set_changes_deletes_and_keeps_key_order(cli: Cli) -> None:
    add_two(cli)
    t1 = "2030-01-05T11:00:00"
    cli.ok("job", "set", "nightly", "--schedule", "21:00", "--delete", "comment,notes-template",
           "--mode", "stop", "--enabled", "0", now=t1)  # fmt: skip
    cli.ok("job", "set", "weekly", "-delete", "exclude-path", "-zstd", "2", now=t1)
    assert cli.jobs_cfg.read_bytes() == (GOLDEN / "jobs-set.cfg").read_bytes()
    # a changed schedule/enabled counts from the edit; other changes do not
    assert cli.state("nightly") == {
        "state": "created",
        "time": T0_EPOCH,
        "updated": T0_EPOCH + 3600,
    }
    assert cli.state("weekly") == {"state": "created", "time": T0_EPOCH}


def test_set_repeated_delete_options_add_up(cli: Cli) -> None:
    """``--delete`` is a list option in Proxmox: ``--delete a --delete b`` removes both."""
    cli.ok("job", "add", "j1", "--schedule", "daily", "--all", "--comment", "hi", "--mode", "stop")
    cli.ok("job", "set", "j1", "--delete", "comment", "-delete", "mode")
    text = cli.jobs_cfg.read_text()
    assert "comment" not in text and "mode" not in text, text


def test_set_errors_leave_the_file_alone(cli: Cli) -> None:
    add_two(cli)
    before = cli.jobs_cfg.read_bytes()
    for args, errors in [
        (["--schedule", "bad"], ["schedule: value 'bad' is not a valid calendar event: "
                                 "unknown weekday 'bad'"]),
        (["--delete", "schedule"], ["schedule: property is missing and it is not optional"]),
        (["--delete", "vmid"], ["vmid: property is missing"]),
        (["--vmid", "100,abc"], ["vmid: strange VM ID 'abc'"]),
    ]:  # fmt: skip
        res = cli.vzdump("job", "set", "weekly", *args)
        assert res.rc == 2, (args, res.err)
        assert param_errors(res.err) == errors
    res = cli.vzdump("job", "set", "nope", "--enabled", "0")
    assert (res.rc, res.err) == (3, "job 'nope' does not exist\n")
    assert cli.jobs_cfg.read_bytes() == before


def test_comment_round_trips_through_set(cli: Cli) -> None:
    cli.ok("job", "add", "j1", "--schedule", "daily", "--all", "--comment", "dbs: nightly ü")
    assert "\tcomment dbs%3A nightly %C3%BC\n" in cli.jobs_cfg.read_text()
    cli.ok("job", "set", "j1", "--mode", "stop")
    assert cli.job_list()[0]["comment"] == "dbs: nightly ü"
    assert "\tcomment dbs%3A nightly %C3%BC\n" in cli.jobs_cfg.read_text()


def test_concurrent_adds_lose_no_job(cli: Cli) -> None:
    """Each add reads, changes and writes jobs.cfg: without the edit lock, some would be lost."""
    procs = [
        subprocess.Popen(
            [str(VZDUMP), "job", "add", f"job{i}", "--schedule", "daily", "--vmid", str(100 + i)],
            env=cli.env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]  # fmt: skip
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sorted(r["id"] for r in cli.job_list()) == [f"job{i}" for i in range(8)]


# --- list and remove --------------------------------------------------------------------------


def test_list_text_and_json(cli: Cli) -> None:
    assert cli.ok("job", "list").out == "ID  Enabled  Schedule  Last run  Result  Next run\n"
    assert cli.job_list() == []
    add_two(cli)
    cli.ok("job", "set", "weekly", "--enabled", "0", now=T0)
    cli.ok("job", "add", "hourly", "--schedule", "hourly", "--vmid", "100", now=T0)
    text = cli.ok("job", "list", now="2030-01-05T10:20:00").out
    assert text == (
        "ID       Enabled  Schedule        Last run  Result  Next run\n"
        "hourly   yes      hourly          -         -       2030-01-05 11:00:00\n"
        "nightly  yes      sat 02:00       -         -       2030-01-12 02:00:00\n"
        "weekly   no       mon..fri 22:30  -         -       -\n"
    )
    rows = cli.job_list(now="2030-01-05T10:20:00")
    assert rows[1] == {
        "id": "nightly", "schedule": "sat 02:00", "enabled": 1, "comment": "nightly CTs: all",
        "last-run": None, "result": None, "state": "created", "next-run": 1894413600,
    }  # fmt: skip
    assert [(r["id"], r["enabled"], r["next-run"]) for r in rows] == [
        ("hourly", 1, T0_EPOCH + 3600),
        ("nightly", 1, 1894413600),
        ("weekly", 0, None),
    ]
    pretty = cli.ok("job", "list", "--output-format", "json-pretty", now=T0).out
    assert pretty.startswith('[\n  {\n    "comment": null,')


def test_list_shows_last_run_and_result(cli: Cli, vmid: int) -> None:
    """A job whose only guest does not exist runs (no container needed) and fails: the listing
    reports when it ran, ``job errors``, and the next event after that run."""
    cli.ok("job", "add", "broken", "--schedule", "daily", "--vmid", str(vmid), now=T0)
    run_at = "2030-01-05T12:00:00"
    res = cli.vzdump("job", "run", "broken", now=run_at)
    assert res.rc == 13, res.err
    assert f"ERROR: Backup of VM {vmid} failed - unable to find VM '{vmid}'" in res.err_lines
    assert res.err_lines[-2:] == ["job 'broken': finished - job errors", "job errors"]
    state = cli.state("broken")
    assert (state["state"], state["msg"], state["started"]) == ("stopped", "job errors",
                                                                T0_EPOCH + 7200)  # fmt: skip
    assert state["finished"] >= state["started"]
    assert cli.ok("job", "list", now=run_at).out.splitlines()[1] == (
        "broken  yes      daily     2030-01-05 12:00:00  job errors  2030-01-06 00:00:00"
    )
    (row,) = cli.job_list(now=run_at)
    assert (row["last-run"], row["result"], row["state"], row["next-run"]) == (
        T0_EPOCH + 7200, "job errors", "stopped", T0_EPOCH + 14 * 3600,
    )  # fmt: skip
    summary = cli.summary("broken")
    assert (summary["job-id"], summary["severity"]) == ("broken", "error")
    assert summary["result"]["guests"][0]["error"] == f"unable to find VM '{vmid}'"


def test_remove(cli: Cli) -> None:
    add_two(cli)
    cli.ok("job", "remove", "nightly")
    assert cli.jobs_cfg.read_text() == (GOLDEN / "jobs-added.cfg").read_text().split("\n\n")[1]
    assert not cli.state_path("nightly").exists()
    assert cli.state_path("weekly").exists()
    assert [r["id"] for r in cli.job_list()] == ["weekly"]
    res = cli.vzdump("job", "remove", "nightly")
    assert (res.rc, res.err) == (3, "job 'nightly' does not exist\n")
    res = cli.vzdump("job", "run", "nightly")
    assert (res.rc, res.err) == (3, "job 'nightly' does not exist\n")


def test_a_bad_state_file_breaks_no_command(cli: Cli) -> None:
    """`"time": Infinity` in one state file: `job list`, `job set` and the scheduler pass
    crashed with a traceback; a job the pass cannot handle fails the pass (exit 13), not the
    jobs after it."""
    for job_id in ("a0", "a1"):
        cli.ok("job", "add", job_id, "--schedule", "02:00", "--vmid", "100", now=T0)
    cli.state_path("a0").write_text('{"state":"stopped","time":Infinity}\n')
    assert [r["id"] for r in cli.job_list(now=T0)] == ["a0", "a1"]
    cli.ok("job", "set", "a0", "--comment", "x", now=T0)
    cli.state_path("a0").write_text('{"state":"stopped","updated":99999999999999999999}\n')
    res = cli.ok("scheduler", "run-due", now="2030-01-05T10:01:00")
    assert res.out == "a0: not-due\na1: not-due\n"
    assert "job 'a0': state file unreadable - counted as a new job from now" in res.err_lines
    cli.state_path("a0").unlink()
    cli.state_path("a0").mkdir()  # cannot even be rewritten
    res = cli.vzdump("scheduler", "run-due", now="2030-01-05T10:02:00")
    assert (res.rc, res.out) == (13, "a0: error\na1: not-due\n"), res.err
    assert res.err_lines[-1] == "job(s) failed: a0"
    cli.state_path("a0").rmdir()


def test_bad_test_clock_is_reported(cli: Cli) -> None:
    res = cli.vzdump("job", "list", now="yesterday")
    assert (res.rc, res.err) == (1, "CTKIT_SCHEDULER_NOW: invalid ISO 8601 time 'yesterday'\n")


# --- timer ------------------------------------------------------------------------------------


def test_timer_install_and_remove(cli: Cli) -> None:
    units = cli.root / "etc/systemd/system"
    res = cli.ok("timer", "install")
    assert res.out == (
        f"wrote {units}/ctkit-scheduler.service\nwrote {units}/ctkit-scheduler.timer\n"
    )
    assert "not enabling them" in res.err  # a scratch root: nothing is enabled
    service = (units / "ctkit-scheduler.service").read_text()
    expected = (GOLDEN / "ctkit-scheduler.service").read_text()
    root_line = f'Environment="CTKIT_ROOT={cli.root}"\n'  # the scratch root travels along
    expected = expected.replace("[Service]\n", "[Service]\n" + root_line, 1)
    assert service == expected.replace("@VZDUMP@", str(BIN / "vzdump"))
    assert Path(str(BIN / "vzdump")).is_absolute()
    timer = units / "ctkit-scheduler.timer"
    assert timer.read_bytes() == (GOLDEN / "ctkit-scheduler.timer").read_bytes()
    assert (timer.stat().st_mode & 0o777) == 0o644
    res = cli.ok("timer", "remove")
    assert res.out == (
        f"removed {units}/ctkit-scheduler.service\nremoved {units}/ctkit-scheduler.timer\n"
    )
    assert sorted(units.iterdir()) == []


def test_list_and_run_say_what_jobs_cfg_gets_wrong(cli: Cli, vmid: int) -> None:
    """A value the file cannot hold is left out (the job runs with the default: snapshot mode
    for a mistyped 'stop'): said by job list and job run as by the scheduler, not silently."""
    (cli.root / "etc/pve").mkdir(parents=True, exist_ok=True)
    (cli.root / "etc/pve/jobs.cfg").write_text(
        f"vzdump: typo\n\tschedule daily\n\tvmid {vmid}\n\tmode stpo\n"
    )
    res = cli.ok("job", "list", now=T0)
    assert "jobs.cfg: " in res.err and "'stpo'" in res.err, res.err
    assert res.out.startswith("ID ") and "typo" in res.out
    res = cli.vzdump("job", "run", "typo", now=T0)
    assert "jobs.cfg: " in res.err and "'stpo'" in res.err, res.err


def test_run_of_a_job_that_cannot_start_says_why_once(cli: Cli) -> None:
    """The file's warning names the line, the error says it once (it came a third time, as a
    log line between them)."""
    cli.jobs_cfg.parent.mkdir(parents=True, exist_ok=True)
    cli.jobs_cfg.write_text("vzdump: j1\n\tschedule 02:00\n\tvmid 900000001\n\tparallel abc\n")
    res = cli.vzdump("job", "run", "j1")
    said = "job 'j1': parallel: type check ('integer') failed - got 'abc'"
    assert (res.rc, res.err.splitlines()) == (12, [f"jobs.cfg: {said}", said])
