"""The notification (vzdump §6): subject, body and JSON summary against golden files, the 1 MiB
log limit, mailnotification, mail through the real local exim, and a real webhook receiver."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import mailbox
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from shared import paths
from shared.errors import CommandError, ParamError
from tests.shared.http_server import handler_server
from vzdump import notify, options
from vzdump.options import BackupOptions as Opts
from vzdump.report import GuestResult, JobResult

GOLDEN = Path(__file__).parent / "golden"
FQDN = "pve1.example.com"
STARTED = 1704506401.0  # 2024-01-06 02:00:01 UTC
NOW = 1704506437.0


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def web_guest() -> GuestResult:
    return GuestResult(
        vmid=100,
        name="web",
        status="ok",
        seconds=14,
        started=1704506401,
        finished=1704506415,
        size=432013312,
        filename="/var/lib/vz/dump/vzdump-lxc-100-2024_01_06-02_00_01.tar.zst",
        log_lines=[
            "2024-01-06 02:00:01 INFO: Starting Backup of VM 100 (lxc)",
            "2024-01-06 02:00:01 INFO: status = running",
            "2024-01-06 02:00:01 INFO: backup mode: snapshot",
            "2024-01-06 02:00:15 INFO: archive file size: 412MB",
            "2024-01-06 02:00:15 INFO: Finished Backup of VM 100 (00:00:14)",
        ],
    )


def db_guest() -> GuestResult:
    return GuestResult(
        vmid=101,
        name="database-server-with-a-long-name",
        status="err",
        seconds=2,
        started=1704506415,
        finished=1704506417,
        error="CT is locked (migrate)",
        log_lines=[
            "2024-01-06 02:00:15 INFO: Starting Backup of VM 101 (lxc)",
            "2024-01-06 02:00:17 ERROR: Backup of VM 101 failed - CT is locked (migrate)",
        ],
    )


def ok_result() -> JobResult:
    return JobResult(
        job_id="backup-1",
        cmdline="vzdump 100 --mode snapshot --storage local --quiet 1 --job-id backup-1",
        started=STARTED,
        finished=STARTED + 14,
        guests=[web_guest()],
        job_log=["HOOK: job-start"],
        job_log_end=["HOOK: job-end"],
    )


def failed_result(error: str | None = None) -> JobResult:
    return JobResult(
        job_id=None,
        cmdline="vzdump 100 101 --mode snapshot",
        started=STARTED,
        finished=STARTED + 3723,
        guests=[web_guest(), db_guest()],
        error=error,
    )


# --- subject and body -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ok_result(), "backup successful"),
        (failed_result(), "backup failed"),
        (failed_result("job-start hook failed"), "backup failed: job-start hook failed"),
        (
            failed_result("dumpdir '/x' does not exist\ntmpdir '/y' does not exist"),
            "backup failed: multiple problems",
        ),
    ],
)
def test_subject(result: JobResult, expected: str) -> None:
    assert notify.subject(result, FQDN) == f"vzdump backup status ({FQDN}): {expected}"


def test_body_success_golden() -> None:
    assert notify.render_body(ok_result()) == golden("notify-ok.txt")


def test_body_failure_golden() -> None:
    error = "could not activate storage 'nas': timeout\ntmpdir '/y' does not exist"
    assert notify.render_body(failed_result(error)) == golden("notify-failed.txt")


def test_one_line_error_is_only_in_the_subject() -> None:
    body = notify.render_body(failed_result("job-start hook failed"))
    assert "job-start hook failed" not in body
    assert body.startswith("Details\n=======\n")


def test_a_name_that_is_not_utf8_does_not_stop_the_notification(ctroot: Path) -> None:
    """A log line or file name with a surrogate escape (a name that is not UTF-8): the mail body
    and the JSON summary escape it (valid UTF-8, valid JSON) instead of raising."""
    guest = web_guest()
    guest.filename = "/var/lib/vz/dump/caf\udce9/vzdump-lxc-100-2024_01_06-02_00_01.tar.zst"
    guest.log_lines = [*guest.log_lines, "2024-01-06 02:00:15 INFO: kept 'caf\udce9'"]
    result = JobResult(None, "vzdump 100", STARTED, NOW, guests=[guest])
    body = notify.render_body(result)
    assert "kept 'caf\\udce9'" in body
    body.encode("utf-8")
    path = notify.write_summary({"filename": guest.filename}, None)
    assert json.loads(path.read_text(encoding="utf-8"))["filename"] == guest.filename


def test_formatting_helpers() -> None:
    assert notify.format_time(0) == "00:00:00"
    assert notify.format_time(3723) == "01:02:03"
    assert notify.format_time(90061) == "25:01:01"
    assert notify.human_bytes(0) == "0 B"
    assert notify.human_bytes(1023) == "1023 B"
    assert notify.human_bytes(1536) == "1.5 KiB"
    assert notify.human_bytes(432013312) == "412 MiB"
    assert notify.human_bytes(432482304) == "412.447 MiB"
    assert notify.human_bytes(3 * 1024**4) == "3 TiB"


def big_result(log_bytes: int) -> JobResult:
    """A result whose logs part is exactly ``log_bytes`` long (UTF-8)."""
    result = JobResult("backup-1", "vzdump 100", STARTED, STARTED + 1, [web_guest()])
    result.guests[0].log_lines = []
    base = len(notify.log_text(result).encode())  # with "no log available"
    result.guests[0].log_lines = ["x"]
    one = len(notify.log_text(result).encode())
    # one log line of n characters costs one + (n - 1) bytes
    result.guests[0].log_lines = ["é" + "x" * (log_bytes - one - 1)]  # é: two bytes
    assert base != one
    assert len(notify.log_text(result).encode()) == log_bytes
    return result


def test_logs_up_to_one_mib_are_sent() -> None:
    body = notify.render_body(big_result(notify.MAX_LOG_SIZE))
    assert notify.LOG_TOO_LONG not in body
    assert "100: éxxx" in body


def test_logs_above_one_mib_are_replaced() -> None:
    body = notify.render_body(big_result(notify.MAX_LOG_SIZE + 1))
    assert body.endswith("Logs\n====\n" + notify.LOG_TOO_LONG + "\n")
    assert "100: " not in body.split("Logs\n====\n", 1)[1]
    assert "Total size: 412 MiB" in body  # the table and totals stay


# --- the JSON summary -------------------------------------------------------------------------


def test_summary_golden_for_a_job(ctroot: Path) -> None:
    messages: list[str] = []
    delivery = notify.notify(
        ok_result(), Opts.from_values({}), fqdn=FQDN, now=NOW, warn=messages.append
    )
    path = paths.jobs_state_dir() / "vzdump-backup-1.notification.json"
    assert delivery.summary_path == path
    assert path.read_text() == golden("notify-summary.json")
    data = json.loads(path.read_text())
    assert data["body"] == golden("notify-ok.txt")
    assert delivery.mailed_to == [] and delivery.webhook_status is None and messages == []


def test_summary_of_an_adhoc_run(ctroot: Path) -> None:
    delivery = notify.notify(failed_result(), Opts.from_values({}), fqdn=FQDN, now=NOW, warn=print)
    assert delivery.summary_path == paths.vzdump_log_dir() / "vzdump.notification.json"
    data = json.loads(delivery.summary_path.read_text())
    assert (data["job-id"], data["severity"]) == (None, "error")
    assert data["result"]["status"] == "failed"
    assert [g["status"] for g in data["result"]["guests"]] == ["ok", "err"]
    assert "log" not in data["result"]["guests"][0]  # the logs are in the (truncated) body
    assert not list(delivery.summary_path.parent.glob(".*.tmp"))  # atomic: no temp file left


def test_a_run_that_sends_no_mail_does_not_load_the_email_package(ctroot: Path) -> None:
    """The email package takes 15-20 ms to import, at the end of every backup job: only a
    mail pays for it."""
    script = (
        "import sys\n"
        "from vzdump import notify\n"
        "from vzdump.options import BackupOptions\n"
        "from vzdump.report import GuestResult, JobResult\n"
        "guest = GuestResult(vmid=100, name='web', status='ok', seconds=1, log_lines=['x'])\n"
        "result = JobResult(None, 'vzdump 100', started=1, finished=2, guests=[guest])\n"
        "before = 'email' in sys.modules\n"
        "notify.notify(result, BackupOptions.from_values({}), warn=print)\n"
        "print(before, 'email' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# --- who gets mail ----------------------------------------------------------------------------


def test_mail_recipients() -> None:
    assert notify.mail_recipients("a@example.com, root@pam;b@example.org  a@example.com") == [
        "a@example.com",
        "root",
        "b@example.org",
    ]
    assert notify.mail_recipients(None) == []


@pytest.mark.parametrize(
    ("mode", "when", "ok", "mailed"),
    [
        ("auto", "always", True, True),
        ("auto", "always", False, True),
        ("auto", "failure", True, False),
        ("auto", "failure", False, True),
        ("legacy-sendmail", "failure", False, True),
        ("notification-system", "always", False, False),
    ],
)
def test_mail_targets(mode: str, when: str, ok: bool, mailed: bool) -> None:
    opts = Opts.from_values(
        options.parse_params(
            {"mailto": "admin@example.com", "notification-mode": mode, "mailnotification": when}
        )
    )
    result = ok_result() if ok else failed_result()
    assert notify.mail_targets(opts, result) == (["admin@example.com"] if mailed else [])
    assert (
        notify.mail_targets(Opts.from_values({"mailnotification": "always"}), result) == []
    )  # no mailto


def test_message_headers_and_long_lines() -> None:
    msg = notify.build_message(["root"], "vzdump backup status (x): ü", "a\n", date=NOW)
    assert (msg["From"], msg["To"], msg["Subject"]) == (
        "root",
        "root",
        "vzdump backup status (x): ü",
    )
    assert msg["Date"] and msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8" and msg["Content-Transfer-Encoding"] == "8bit"
    long = notify.build_message(["root"], "s", "y" * 2000 + "\n")
    assert long["Content-Transfer-Encoding"] == "quoted-printable"
    assert long.get_content() == "y" * 2000 + "\n"


def test_missing_sendmail_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="unable to run"):
        notify.send_mail(["root"], "s", "b", sendmail=str(tmp_path / "no-sendmail"))


def test_failing_sendmail_is_only_a_warning(ctroot: Path, tmp_path: Path) -> None:
    fake = tmp_path / "sendmail"
    fake.write_text("#!/bin/sh\necho 'relay refused' >&2\nexit 75\n")
    fake.chmod(0o755)
    warnings: list[str] = []
    delivery = notify.notify(
        failed_result(),
        Opts.from_values({"mailto": ["a@example.com"]}),
        fqdn=FQDN,
        now=NOW,
        warn=warnings.append,
        sendmail=str(fake),
    )
    assert delivery.mailed_to == []
    assert warnings == [f"sending notification mail failed - '{fake}' failed - relay refused"]
    assert delivery.summary_path is not None and delivery.summary_path.exists()


def test_a_sendmail_that_leaves_a_child_running_is_not_waited_for(tmp_path: Path) -> None:
    """sendmail took the mail and left a delivery process running that held its output pipe:
    the job waited 120 s and called a sent mail failed ("timed out")."""
    fake = tmp_path / "sendmail"
    fake.write_text(f"#!/bin/sh\ncat > {tmp_path}/mail\nsleep 300 &\necho $! > {tmp_path}/pid\n")
    fake.chmod(0o755)
    started = time.monotonic()
    try:
        assert notify.send_mail(["root"], "s", "b", sendmail=str(fake)) == ["root"]
        assert time.monotonic() - started < 10
        assert b"Subject: s" in (tmp_path / "mail").read_bytes()
    finally:
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)


def test_what_sendmail_says_is_one_bounded_line(tmp_path: Path) -> None:
    """Its whole stderr became the warning: several lines (each looked like a warning of its
    own) and any size (50 MB in one line)."""
    fake = tmp_path / "sendmail"
    fake.write_text("#!/bin/sh\ncat >/dev/null\nprintf '\\nline one\\033[2J\\nline two\\n' >&2\n"
                    "head -c 5000000 /dev/zero | tr '\\0' x >&2\nexit 1\n")  # fmt: skip
    fake.chmod(0o755)
    with pytest.raises(CommandError) as raised:
        notify.send_mail(["root"], "s", "b", sendmail=str(fake))
    assert str(raised.value) == f"'{fake}' failed - line one\\x1b[2J"
    (fake.parent / "quiet").write_text("#!/bin/sh\nexit 3\n")
    (fake.parent / "quiet").chmod(0o755)
    with pytest.raises(CommandError, match=r"failed - exit code 3$"):
        notify.send_mail(["root"], "s", "b", sendmail=str(fake.parent / "quiet"))


# --- delivery through the real local MTA (exim4, local delivery only) --------------------------

MAIL_USER = "ctkit-mailtest"


def _queued_for(user: str) -> list[str]:
    proc = subprocess.run(
        ["exiqgrep", "-i", "-r", user], capture_output=True, text=True, check=False
    )
    return proc.stdout.split()


@pytest.fixture
def mail_user() -> Iterator[Path]:
    """A throw-away local user whose mbox (/var/mail/<user>) the test reads; removed after."""
    if os.geteuid() != 0 or not Path(notify.SENDMAIL).exists() or not shutil.which("useradd"):
        pytest.skip("needs root, /usr/sbin/sendmail (exim4) and useradd")
    mbox = Path("/var/mail") / MAIL_USER
    home = Path(tempfile.mkdtemp(prefix=f"{MAIL_USER}.", dir="/var/tmp"))
    try:
        subprocess.run(["userdel", MAIL_USER], capture_output=True, check=False)  # leftovers
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/usr/sbin/nologin",
                MAIL_USER,
            ],
            check=True,
            capture_output=True,
        )
        shutil.chown(home, user=MAIL_USER)
        mbox.unlink(missing_ok=True)
        yield mbox
    finally:
        for msgid in _queued_for(MAIL_USER):
            subprocess.run(["exim4", "-Mrm", msgid], capture_output=True, check=False)
        mbox.unlink(missing_ok=True)
        subprocess.run(["userdel", MAIL_USER], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def wait_for_mail(mbox: Path, count: int, timeout: float = 30) -> list[EmailMessage]:
    """exim hands local mail to a background delivery process: poll the mbox."""
    deadline = time.monotonic() + timeout
    while True:
        if mbox.exists():
            box = mailbox.mbox(str(mbox), create=False)
            try:
                raw = [bytes(m) for m in box]
            finally:
                box.close()
            if len(raw) >= count:
                parse = email.message_from_bytes
                return [parse(r, _class=EmailMessage, policy=email.policy.default) for r in raw]
        if time.monotonic() > deadline:
            queued = _queued_for(MAIL_USER)
            raise AssertionError(f"no mail in {mbox} after {timeout}s (queued: {queued})")
        time.sleep(0.2)


def test_send_mail_through_local_exim(mail_user: Path) -> None:
    body = notify.render_body(failed_result("a\nb")) + "\n.\nline after a lone dot: ünïcode\n"
    subject = notify.subject(failed_result("a\nb"), FQDN)
    assert notify.send_mail([MAIL_USER], subject, body) == [MAIL_USER]
    (msg,) = wait_for_mail(mail_user, 1)
    assert msg["Subject"] == subject
    assert msg["To"].startswith(MAIL_USER)
    assert msg["From"].addresses[0].username == "root"
    assert msg["Date"]
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg.get_content() == body  # nothing lost at the lone dot, UTF-8 intact


def test_mailnotification_failure_suppresses_success_mail(ctroot: Path, mail_user: Path) -> None:
    opts = Opts.from_values(
        options.parse_params(
            {"mailto": f"{MAIL_USER}@pam", "mailnotification": "failure"}, options.OPTIONS
        )
    )
    quiet = notify.notify(ok_result(), opts, fqdn=FQDN, now=NOW, warn=pytest.fail)
    assert quiet.mailed_to == []
    loud = notify.notify(failed_result(), opts, fqdn=FQDN, now=NOW, warn=pytest.fail)
    assert loud.mailed_to == [MAIL_USER]
    messages = wait_for_mail(mail_user, 1)
    time.sleep(1)  # had the success mail been sent first, it would be here by now
    messages = wait_for_mail(mail_user, 1)
    assert [m["Subject"] for m in messages] == [f"vzdump backup status ({FQDN}): backup failed"]
    assert messages[0].get_content() == loud.body


# --- the webhook ------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    status = 204
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"received": [], "status": 204})
    with handler_server(handler) as hostport:
        yield f"http://{hostport}", handler


def test_webhook_receives_the_summary(ctroot: Path, webhook: tuple[str, type[Receiver]]) -> None:
    url, handler = webhook
    opts = Opts.from_values(
        options.parse_params({"notify-webhook": f"{url}/hooks/vzdump"}, options.OPTIONS)
    )
    delivery = notify.notify(ok_result(), opts, fqdn=FQDN, now=NOW, warn=pytest.fail)
    assert delivery.webhook_status == 204
    ((path, headers, body),) = handler.received
    assert path == "/hooks/vzdump"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body) == json.loads(golden("notify-summary.json"))


def test_webhook_errors_are_warnings(ctroot: Path, webhook: tuple[str, type[Receiver]]) -> None:
    url, handler = webhook
    handler.status = 500
    warnings: list[str] = []
    opts = Opts.from_values({"notify-webhook": f"{url}/hook?token=secret"})
    delivery = notify.notify(ok_result(), opts, fqdn=FQDN, now=NOW, warn=warnings.append)
    assert delivery.webhook_status is None
    assert warnings == [f"notification webhook '{url}/hook' failed - HTTP status 500"]
    assert delivery.summary_path is not None and delivery.summary_path.exists()


def test_unreachable_webhook_is_a_warning(ctroot: Path) -> None:
    with socket.socket() as sock:  # bound, never listening: refused, and nobody else's port
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        warnings: list[str] = []
        delivery = notify.notify(
            ok_result(),
            Opts.from_values({"notify-webhook": dead}),
            fqdn=FQDN,
            now=NOW,
            warn=warnings.append,
        )
    assert warnings == [f"notification webhook '{dead}' failed - connection failed"]
    assert delivery.summary_path is not None and delivery.summary_path.exists()


def test_webhook_option_is_validated() -> None:
    assert options.parse_params({"notify-webhook": "https://hooks.example/x"}, options.OPTIONS)
    for bad in ("ftp://x/y", "http://", "not a url", "http://[::1"):
        with pytest.raises(ParamError):
            options.parse_params({"notify-webhook": bad}, options.OPTIONS)


def test_redact_url() -> None:
    assert notify.redact_url("https://u:pw@hooks.example:8443/x/y?token=s") == (
        "https://hooks.example:8443/x/y"
    )
    assert notify.redact_url("http://[::1]/h?k=v") == "http://[::1]/h"
    assert notify.redact_url("http://host:99999/") == "<invalid URL>"


@pytest.mark.parametrize("job_id", ["nightly.db", "7", "x/../y"])
def test_a_job_id_that_names_no_job_gives_the_ad_hoc_summary(ctroot: Path, job_id: str) -> None:
    """``--job-id`` takes any word, as Proxmox's does; the summary named after it ended the run
    in a traceback, before its mail."""
    result = failed_result()
    result.job_id = job_id
    delivery = notify.notify(result, Opts.from_values({}), fqdn=FQDN, now=NOW, warn=print)
    assert delivery.summary_path == paths.vzdump_log_dir() / "vzdump.notification.json"
    assert json.loads(delivery.summary_path.read_text())["job-id"] == job_id


@pytest.mark.parametrize("brk", ["\r", "\x0b", "\x1c", "\x85", "\u2028"])
def test_an_error_with_a_line_break_other_than_newline_keeps_the_subject_one_line(
    brk: str,
) -> None:
    """A carriage return (from a --dumpdir path, say) in the one-line error went into the
    Subject header, and building the mail raised: no failure mail, and a traceback."""
    line = notify.subject(failed_result(f"unable to create '/nonexistent{brk}X'"), FQDN)
    assert brk not in line and ("\\x" in line or "\\u" in line)
    msg = notify.build_message(["root"], line, "body\n")
    assert msg["Subject"] == line


def test_a_receiver_that_drips_its_headers_is_given_up_at_the_timeout(ctroot: Path) -> None:
    """Each header line came inside the read timeout: the 10 s webhook held the job's end for
    as long as the receiver liked (45 s in the report; a minute at the client's stall bound)."""
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"

        def drip() -> None:
            conn, _addr = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.5):
                    with contextlib.suppress(OSError):
                        conn.sendall(b"X-Drip: 1\r\n")

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        start = time.monotonic()
        try:
            with pytest.raises(notify.WebhookError, match=r"^timed out$"):
                notify.post_webhook(url, {"x": 1}, timeout=2.0)
        finally:
            stop.set()
        # the receiver drips until told to stop: a client without a total bound never ends
        assert time.monotonic() - start < 8
        thread.join(5)


def test_a_temp_dir_that_cannot_be_used_fails_the_mail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sendmail's output goes to a temporary file: one that cannot be made was a traceback."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(CommandError, match=r"^unable to run '/bin/true' - No such file"):
        notify.send_mail(["root"], "s", "b", sendmail="/bin/true")
