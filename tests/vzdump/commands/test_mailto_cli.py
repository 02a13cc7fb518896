"""``vzdump job add/set --mailto`` through the real console script (issue: ``root`` was
refused, a bad recipient in jobs.cfg was dropped with a warning and exit 0)."""

from __future__ import annotations

from .conftest import Cli


def test_job_add_accepts_a_local_user(cli: Cli) -> None:
    cli.ok("job", "add", "mail", "--schedule", "daily", "--all", "1", "--mailto", "root,ops")
    assert "\tmailto root,ops\n" in cli.jobs_cfg.read_text()


def test_job_set_refuses_a_bad_recipient_kept_in_the_file(cli: Cli) -> None:
    cli.jobs_cfg.parent.mkdir(parents=True)
    cli.jobs_cfg.write_text("vzdump: mail\n\tschedule daily\n\tall 1\n\tmailto bad!x\n")
    res = cli.vzdump("job", "set", "mail", "--comment", "x")
    assert res.rc == 2 and "mailto: invalid format - value 'bad!x'" in res.err
    assert "mailto bad!x" in cli.jobs_cfg.read_text()
