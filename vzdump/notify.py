"""The end-of-job notification (spec vzdump §6, §1.1): subject, plain-text body, mail, JSON.

Subject: ``vzdump backup status (<fqdn>): backup successful`` or ``backup failed``, followed by
``: <error>`` for a one-line job error or ``: multiple problems`` for several (as Proxmox, a
one-line error is only in the subject; several are at the top of the body). The body follows
Proxmox's text template::

    <job error, if multi-line>

    Details
    =======
    VMID  Name  Status      Time    Size  Filename       (one row per guest)
    Total running time: HH:MM:SS
    Total size: 1.5 GiB

    Logs
    ====
    <cmdline>, the job lines, each guest's lines as "<vmid>: <line>", the job-end lines

The logs are replaced by ``Log output was too long to be sent. See Task History for details!``
when they exceed 1 MiB (UTF-8). Sizes print like Proxmox's ``human-bytes`` (binary units, up
to three decimals).

Delivery, by ``notification-mode`` (ctkit has no Proxmox notification system):

* a JSON summary (:func:`summary`) is always written atomically, for a job to
  ``<jobs_state_dir>/vzdump-<job-id>.notification.json`` (beside the job's state file), for an
  ad-hoc run to ``<vzdump_log_dir>/vzdump.notification.json`` (the latest ad-hoc run);
* mail through ``/usr/sbin/sendmail -t`` to ``mailto`` when the mode is ``auto`` or
  ``legacy-sendmail`` and ``mailnotification`` allows it (``failure``: only failed runs);
  ``notification-system`` sends no mail. ``user@pam`` entries go to the local user ``user``;
* the summary is POSTed to ``notify-webhook`` (a ctkit option) when set, whatever the mode
  and ``mailnotification`` (monitoring wants the successes too), with a 10 s timeout.

A delivery problem is reported through ``warn`` and never fails the backup.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported only when a mail is sent or a webhook posted (start-up time)
    from email.message import EmailMessage
    from email.policy import EmailPolicy

    from shared.httpclient import TransportError

from shared import atomic, paths
from shared.errors import CommandError
from shared.formats.types import FormatError, check_configid
from shared.printable import printable, utf8_text

from .options import BackupOptions
from .report import MAX_LOG_SIZE, GuestResult, JobResult

LOG_TOO_LONG = "Log output was too long to be sent. See Task History for details!"
SENDMAIL = "/usr/sbin/sendmail"
SENDMAIL_TIMEOUT = 120.0
MAX_COMPLAINT = 64 << 10  # bytes of sendmail's stderr read for its first line
MAIL_FROM = "root"
WEBHOOK_TIMEOUT = 10.0
ADHOC_SUMMARY = "vzdump.notification.json"
SUMMARY_VERSION = 1
MAX_MAIL_LINE = 998  # RFC 5322; longer lines go quoted-printable

Warn = Callable[[str], None]


def _stderr_warn(message: str) -> None:
    print(f"WARN: {message}", file=sys.stderr, flush=True)


# --- formatting -------------------------------------------------------------------------------


def format_time(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), as vzdump's ``Finished Backup`` line."""
    total = max(round(seconds), 0)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def human_bytes(nbytes: int) -> str:
    """Proxmox's ``human-bytes``: ``512 B``, ``1.5 KiB``, ``412.451 MiB``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{int(value)} B"
            text = f"{round(value, 3):.3f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def host_fqdn() -> str:
    """The host's fully qualified name (``hostname -f``), else the node name."""
    name = socket.getfqdn()
    if not name or name.startswith("localhost"):
        return paths.node_name()
    return name


# --- subject and body -------------------------------------------------------------------------


def status_text(result: JobResult) -> tuple[str, str | None]:
    """The subject's status and the error that goes into the body (multi-line errors only)."""
    text = "backup successful" if result.ok else "backup failed"
    error = (result.error or "").strip() or None
    if error is None:
        return text, None
    if "\n" in error:
        return f"{text}: multiple problems", error
    # one line in a mail header: a carriage return (from a path, say) made the mail fail to
    # build, and the run ended in a traceback without it
    return f"{text}: {printable(error)}", None


def subject(result: JobResult, fqdn: str) -> str:
    return f"vzdump backup status ({fqdn}): {status_text(result)[0]}"


TABLE_HEADER = ("VMID", "Name", "Status", "Time", "Size", "Filename")
RIGHT_ALIGNED = {3, 4}  # Time and Size


def _guest_row(guest: GuestResult) -> tuple[str, ...]:
    size = human_bytes(guest.size) if guest.ok and guest.size is not None else "-"
    filename = guest.filename if guest.ok and guest.filename else "-"
    name = guest.name or f"VM {guest.vmid}"
    return (str(guest.vmid), name, guest.status, format_time(guest.seconds), size, filename)


def guest_table(guests: Sequence[GuestResult]) -> list[str]:
    """The Details table: one header line and one line per guest, columns two spaces apart."""
    rows = [TABLE_HEADER, *(_guest_row(g) for g in guests)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in RIGHT_ALIGNED else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def log_text(result: JobResult) -> str:
    """The logs part: cmdline, job lines, each guest's lines prefixed ``<vmid>: ``, end lines."""
    out = [result.cmdline, ""]
    if result.job_log:
        out += [*result.job_log, ""]
    for guest in result.guests:
        if guest.log_lines:
            out += [f"{guest.vmid}: {line}" for line in guest.log_lines]
        else:
            out.append(f"{guest.vmid}: no log available")
        out.append("")
    out += result.job_log_end
    return "\n".join(out).rstrip("\n") + "\n"


def render_body(result: JobResult) -> str:
    _, error = status_text(result)
    parts = [f"{error}\n\n" if error else ""]
    parts.append("Details\n=======\n")
    parts.append("".join(f"{line}\n" for line in guest_table(result.guests)))
    parts.append(f"Total running time: {format_time(result.duration)}\n")
    parts.append(f"Total size: {human_bytes(result.total_size)}\n\n")
    parts.append("Logs\n====\n")
    logs = log_text(result)
    logs = utf8_text(logs)  # a file name that is not UTF-8 must not stop the notification
    parts.append(logs if len(logs.encode("utf-8")) <= MAX_LOG_SIZE else f"{LOG_TOO_LONG}\n")
    return utf8_text("".join(parts))


# --- the JSON summary and the webhook ---------------------------------------------------------


def summary(
    result: JobResult, *, fqdn: str, subject_line: str, body: str, now: float
) -> dict[str, Any]:
    """The JSON summary (``version`` 1): metadata, the mail's subject and body (logs already
    truncated), and the result without its log lines (see :mod:`vzdump.report`)."""
    return {
        "version": SUMMARY_VERSION,
        "type": "vzdump",
        "time": round(now),
        "hostname": fqdn,
        "job-id": result.job_id,
        "severity": "info" if result.ok else "error",
        "subject": subject_line,
        "body": body,
        "result": result.to_dict(logs=False),
    }


def summary_path(job_id: str | None) -> Path:
    """A job's summary by its id; a run's that names no job of ``jobs.cfg`` (whose ids are
    config ids) beside the ad-hoc runs'. ``--job-id`` takes any word, as Proxmox's does: such
    an id ended the run in a traceback before its mail, and it never becomes a path."""
    try:
        if job_id is not None:
            check_configid(job_id)
            return paths.jobs_state_dir() / f"vzdump-{job_id}.notification.json"
    except FormatError:
        pass
    return paths.vzdump_log_dir() / ADHOC_SUMMARY


def write_summary(data: Mapping[str, Any], job_id: str | None) -> Path:
    path = summary_path(job_id)
    atomic.write_text(path, utf8_text(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")
    return path


class WebhookError(Exception):
    """The webhook was not delivered; the text is a short reason that never repeats the URL
    (which may carry a token)."""


def post_webhook(url: str, data: Mapping[str, Any], timeout: float = WEBHOOK_TIMEOUT) -> int:
    """POST the summary as JSON; returns the HTTP status, raises :class:`WebhookError` when the
    receiver is not reached or answers with an error status (400 and above)."""
    import threading

    from shared.httpclient import Client, TransportError  # only when a webhook is posted

    payload = utf8_text(json.dumps(data, ensure_ascii=False)).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    answer: list[int | TransportError] = []

    def post() -> None:
        try:
            with Client(user_agent="ctkit-vzdump").request(
                "POST", url, headers=headers, body=payload, timeout=(timeout, timeout)
            ) as response:
                answer.append(response.status)
        except TransportError as err:
            answer.append(err)

    # the timeout is the whole exchange's: a receiver that drips its headers, each line inside
    # the read timeout, held the job's end (and a scheduled job's state) for a minute; the
    # thread left behind ends at the client's own stall bound, or with the process
    poster = threading.Thread(target=post, name="webhook", daemon=True)
    poster.start()
    poster.join(timeout)
    if not answer:
        raise WebhookError("timed out")
    status = answer[0]
    if isinstance(status, TransportError):
        raise WebhookError(_reason(status))
    if status >= 400:
        raise WebhookError(f"HTTP status {status}")
    return status


# --- mail -------------------------------------------------------------------------------------


def mail_recipients(mailto: str | Sequence[str] | None) -> list[str]:
    """``mailto`` as addresses: split on ``,;`` and white space; ``user@pam`` becomes the local
    user ``user`` (ctkit has no user.cfg to look an address up in)."""
    words = re.split(r"[,;\s]+", mailto) if isinstance(mailto, str) else list(mailto or [])
    result: list[str] = []
    for word in (w.strip() for w in words):
        if word.endswith("@pam"):
            word = word[: -len("@pam")]
        if word and word not in result:
            result.append(word)
    return result


def mail_targets(opts: BackupOptions, result: JobResult) -> list[str]:
    """Whom to mail for this result, by notification-mode and mailnotification (§1.1)."""
    recipients = mail_recipients(opts.mailto)
    if not recipients or opts.notification_mode == "notification-system":
        return []
    if opts.mailnotification == "failure" and result.ok:
        return []
    return recipients


def mail_policy() -> EmailPolicy[EmailMessage]:
    """Fold headers only where RFC 5322 demands it: a folded subject comes back with a leading
    space from some readers. (The email package costs 15-20 ms to import: a job that sends no
    mail does not load it.)"""
    import email.policy

    return email.policy.default.clone(max_line_length=MAX_MAIL_LINE)


def build_message(
    recipients: Sequence[str],
    subject_line: str,
    body: str,
    *,
    mail_from: str = MAIL_FROM,
    date: float | None = None,
) -> EmailMessage:
    import email.utils
    from email.message import EmailMessage

    msg = EmailMessage(policy=mail_policy())
    msg["From"] = mail_from
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject_line
    msg["Date"] = email.utils.formatdate(date, localtime=True)
    msg["Auto-Submitted"] = "auto-generated"
    longest = max((len(line.encode("utf-8")) for line in body.splitlines()), default=0)
    cte = "8bit" if longest <= MAX_MAIL_LINE else "quoted-printable"
    msg.set_content(body, subtype="plain", charset="utf-8", cte=cte)
    return msg


def send_mail(
    mailto: str | Sequence[str],
    subject_line: str,
    body: str,
    *,
    mail_from: str = MAIL_FROM,
    sendmail: str = SENDMAIL,
    date: float | None = None,
) -> list[str]:
    """Hand a text/plain UTF-8 message to the local MTA (``sendmail -t -oi``); returns the
    recipients. Raises :class:`CommandError` when sendmail fails or is missing."""
    recipients = mail_recipients(mailto)
    if not recipients:
        return []
    msg = build_message(recipients, subject_line, body, mail_from=mail_from, date=date)
    data = msg.as_bytes()  # with the policy the message was made with
    # its output into a file, not a pipe: a delivery process it leaves running holds a pipe
    # open, and the job waited the whole timeout for a mail that was sent
    try:
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the with below
    except OSError as err:  # /tmp read-only, say
        raise CommandError(f"unable to run '{sendmail}' - {err.strerror}") from None
    with errors:
        try:
            proc = subprocess.Popen([sendmail, "-t", "-oi"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
        except OSError as err:
            raise CommandError(f"unable to run '{sendmail}' - {err.strerror}") from None
        try:
            proc.communicate(data, timeout=SENDMAIL_TIMEOUT)
        except BaseException as err:  # its time is up, or a signal ends the job
            proc.kill()
            proc.wait()
            if isinstance(err, subprocess.TimeoutExpired):
                raise CommandError(
                    f"'{sendmail}' timed out after {SENDMAIL_TIMEOUT:.0f} s"
                ) from None
            raise
        if proc.returncode != 0:
            errors.seek(0)
            raise CommandError(f"'{sendmail}' failed - {_first_line(errors, proc.returncode)}")
    return recipients


def _first_line(errors: IO[bytes], returncode: int) -> str:
    """sendmail's complaint in one line of bounded length (its exit code if it said nothing)."""
    for raw in errors.read(MAX_COMPLAINT).splitlines():
        if line := printable(raw.decode("utf-8", "replace").strip()):
            return line[:300]
    return f"exit code {returncode}"


# --- everything together ----------------------------------------------------------------------


@dataclass
class Delivery:
    """What :func:`notify` did."""

    subject: str
    body: str
    summary_path: Path | None = None
    mailed_to: list[str] = field(default_factory=list)
    webhook_status: int | None = None


def notify(
    result: JobResult,
    opts: BackupOptions,
    *,
    fqdn: str | None = None,
    now: float | None = None,
    warn: Warn = _stderr_warn,
    sendmail: str = SENDMAIL,
) -> Delivery:
    """Write the JSON summary, send the mail and POST the webhook as ``opts`` ask (the merged
    vzdump options). Problems become warnings."""
    host = fqdn or host_fqdn()
    when = time.time() if now is None else now
    delivery = Delivery(subject(result, host), render_body(result))
    data = summary(result, fqdn=host, subject_line=delivery.subject, body=delivery.body, now=when)
    try:
        delivery.summary_path = write_summary(data, result.job_id)
    except OSError as err:
        warn(f"unable to write notification summary - {err}")
    recipients = mail_targets(opts, result)
    if recipients:
        try:
            delivery.mailed_to = send_mail(
                recipients, delivery.subject, delivery.body, date=when, sendmail=sendmail
            )
        except CommandError as err:
            warn(f"sending notification mail failed - {err}")
    url = opts.notify_webhook
    if url:
        try:
            delivery.webhook_status = post_webhook(str(url), data)
        except WebhookError as err:
            warn(f"notification webhook '{redact_url(str(url))}' failed - {err}")
    return delivery


def redact_url(url: str) -> str:
    """The URL without credentials or query (tokens often live there), for log lines."""
    from shared.httpclient import netloc  # loaded already: a webhook was posted

    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # not a URL at all (the option check normally prevents this)
        return "<invalid URL>"
    return f"{parts.scheme}://{netloc(host, port)}{parts.path}"


def _reason(err: TransportError) -> str:
    """A short reason that does not repeat the URL: ``http.client`` quotes it in some of its
    messages (a URL with control characters)."""
    if err.timed_out:
        return "timed out"
    if err.reason.startswith("invalid URL"):
        return "invalid URL"
    if err.transient:
        return "connection failed"
    return err.reason  # a certificate that does not verify, too many redirects


__all__ = [
    "LOG_TOO_LONG",
    "MAX_LOG_SIZE",
    "Delivery",
    "WebhookError",
    "build_message",
    "format_time",
    "guest_table",
    "host_fqdn",
    "human_bytes",
    "log_text",
    "mail_recipients",
    "mail_targets",
    "notify",
    "post_webhook",
    "redact_url",
    "render_body",
    "send_mail",
    "status_text",
    "subject",
    "summary",
    "summary_path",
    "write_summary",
]
