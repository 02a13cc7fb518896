"""``mailto`` as Proxmox accepts it (addresses, local user names, lists), refused loudly at
every entry point when invalid, and delivered to the local ``root`` mailbox by the real exim4."""

from __future__ import annotations

import io
import mailbox
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from shared import paths
from shared.errors import ConfigError, ParamError
from vzdump import notify, options, scheduler
from vzdump.engine.job import effective_options
from vzdump.engine.log import JobLog
from vzdump.jobs import config, manage
from vzdump.report import JobResult

BAD = "invalid format - value 'bad!x' does not look like a valid email address or user name"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("root", ["root"]),
        ("root,admin@example.com;john.doe  ops", ["root", "admin@example.com", "john.doe", "ops"]),
        ("root@pam", ["root@pam"]),
    ],
)  # fmt: skip
def test_accepted(raw: str, expected: list[str]) -> None:
    assert options.parse_params({"mailto": raw})["mailto"] == expected


@pytest.mark.parametrize("raw", ["bad!x", "root,bad!x", "@example.com", "a@", "a..b"])
def test_refused(raw: str) -> None:
    with pytest.raises(ParamError) as info:
        options.parse_params({"mailto": raw})
    assert set(info.value.errors) == {"mailto"}


def test_jobs_cfg_keeps_a_bad_recipient_and_refuses_to_run_it(ctroot: Path) -> None:
    text = "vzdump: good\n\tschedule daily\n\tall 1\n\tmailto root\n\n" + (
        "vzdump: bad\n\tschedule daily\n\tall 1\n\tmailto root,bad!x\n"
    )
    cfg = config.parse_jobs(text)
    good, bad = cfg.sections
    assert config.job_params(good)["mailto"] == ["root"]
    assert bad.props["mailto"] == "root,bad!x"  # not dropped: the job would mail no one
    assert cfg.warnings == [f"job 'bad': mailto: {BAD}"]
    assert cfg.render() == text
    with pytest.raises(ConfigError, match="job 'bad': mailto"):
        config.check_job(bad)
    paths.jobs_cfg().parent.mkdir(parents=True)
    paths.jobs_cfg().write_text(text)
    with pytest.raises(ParamError) as info:  # job set does not carry the bad value on quietly
        manage.set_job("bad", {"comment": "x"})
    assert info.value.errors == {"mailto": BAD}
    manage.set_job("bad", {"mailto": "root"})
    assert config.read_jobs(strict=True).get("bad") is not None


def test_bad_recipient_in_vzdump_conf_fails_the_job(ctroot: Path) -> None:
    paths.vzdump_conf().parent.mkdir(parents=True, exist_ok=True)
    paths.vzdump_conf().write_text("mailto: bad!x\n")
    log = JobLog(io.StringIO())
    with pytest.raises(ConfigError, match=r"mailto in '/etc/vzdump\.conf'"):
        effective_options(options.parse_params({"vmid": "100"}), log)
    assert effective_options(options.parse_params({"vmid": "100", "mailto": "root"}), log)


def _root_mailbox() -> Path:
    """Where exim delivers mail for ``root`` on this host (Debian: /var/mail/mail)."""
    if os.geteuid() != 0 or not Path(notify.SENDMAIL).exists() or not shutil.which("exim4"):
        pytest.skip("needs root and exim4")
    route = subprocess.run(["exim4", "-bt", "root"], capture_output=True, text=True, check=False)
    m = re.search(r"-> (/\S+)", route.stdout)
    if not m:
        pytest.skip(f"root's mail does not go to a local file here: {route.stdout!r}")
    return Path(m.group(1))


def _take_mail(mbox: Path, subject: str, timeout: float = 30) -> str:
    """Wait for the message with ``subject`` and remove it from root's mailbox, which the MTA
    keeps writing to: under the mailbox's locks, and with its owner restored (rewriting the
    mbox makes a new file, and the MTA delivers to it as that owner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mbox.exists():
            st = mbox.stat()
            box = mailbox.mbox(str(mbox), create=False)
            try:
                box.lock()
            except mailbox.ExternalClashError:  # the MTA is delivering right now
                box.close()
                time.sleep(0.2)
                continue
            try:
                for key, msg in box.items():
                    if msg["Subject"] == subject:
                        body = msg.get_payload(decode=True)
                        box.remove(key)
                        box.flush()
                        os.chown(mbox, st.st_uid, st.st_gid)
                        os.chmod(mbox, st.st_mode & 0o7777)
                        return bytes(body).decode()
            finally:
                box.unlock()
                box.close()
        time.sleep(0.2)
    raise AssertionError(f"no mail '{subject}' in {mbox} after {timeout}s")


def test_mail_to_root_reaches_roots_mailbox() -> None:
    mbox = _root_mailbox()
    subject = f"ctkit mailto test {uuid.uuid4()}"
    assert notify.send_mail(
        options.parse_params({"mailto": "root"})["mailto"], subject, "hi\n"
    ) == ["root"]
    assert _take_mail(mbox, subject) == "hi\n"


def test_a_job_with_a_bad_recipient_does_not_run(ctroot: Path) -> None:
    paths.jobs_cfg().parent.mkdir(parents=True)
    paths.jobs_cfg().write_text("vzdump: bad\n\tschedule daily\n\tall 1\n\tmailto bad!x\n")
    calls: list[str] = []

    def runner(job_id: str, params: dict[str, object]) -> JobResult:
        calls.append(job_id)
        raise AssertionError("must not run")

    with pytest.raises((ConfigError, ParamError), match="mailto"):
        scheduler.run_job_now("bad", runner, log=lambda _msg: None)
    assert calls == []
