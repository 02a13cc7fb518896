from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

from shared import tasklog
from tests.terminal import open_pty, plain, read_all, screen


def test_console_and_file_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tasklog.TaskLog(out)
    fh = log.attach(tmp_path / "lxc-100.log")
    log.info("status = running")
    log.warn("two\nlines")
    log.error("boom")
    log.detach(fh)
    log.info("after detach")
    assert out.getvalue().splitlines() == [
        "INFO: status = running",
        "WARN: two",
        "WARN: lines",
        "ERROR: boom",
        "INFO: after detach",
    ]
    lines = (tmp_path / "lxc-100.log").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR): ", line), line
    assert (log.warnings, log.errors) == (1, 1)


def test_a_recorded_line_goes_to_the_files_only(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tasklog.TaskLog(out)
    log.attach(tmp_path / "guests.log")
    log.record("TASK ERROR: two\nlines")
    log.close()
    assert out.getvalue() == ""
    lines = (tmp_path / "guests.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["TASK ERROR: two", "lines"]


def test_a_name_that_is_not_utf8_is_logged_escaped(tmp_path: Path) -> None:
    """A file name with a Latin-1 byte (os.listdir gives it as a surrogate escape) in a log
    line: the file line is escaped and the task goes on (it ended the backup before)."""
    log = tasklog.TaskLog(io.StringIO())
    fh = log.attach(tmp_path / "task.log")
    log.info("removing backup 'caf\udce9.tar'")
    log.detach(fh)
    assert "removing backup 'caf\\udce9.tar'" in (tmp_path / "task.log").read_text()


def test_a_carriage_return_or_an_escape_never_forges_a_line(tmp_path: Path) -> None:
    """An error naming a path with a carriage return went to the console and the log raw: a
    reader saw a line of the path's choosing in place of the error."""
    out = io.StringIO()
    log = tasklog.TaskLog(out)
    fh = log.attach(tmp_path / "task.log")
    log.error("unable to create '/x\rINFO: Backup job finished successfully\x1b[2K'")
    log.detach(fh)
    shown = "ERROR: unable to create '/x\\x0dINFO: Backup job finished successfully\\x1b[2K'"
    assert out.getvalue() == shown + "\n"
    assert (tmp_path / "task.log").read_text().rstrip("\n").endswith(shown)


def test_plain_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with tasklog.progress("download", total=4 << 20, stream=out, interval=0) as prog:
        prog.update(1 << 20)
        prog.update(1 << 20)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("download: 2.0MiB of 4.0MiB (50%), ")
    assert "ETA" in lines[-1]


def test_human_bytes() -> None:
    assert tasklog.human_bytes(512) == "512B"
    assert tasklog.human_bytes(1130598400) == "1.1GiB"
    assert tasklog.human_bytes(95 << 20) == "95MiB"


class _ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_console_does_not_end_the_task(tmp_path: Path) -> None:
    log = tasklog.TaskLog(_ClosedPipe())
    fh = log.attach(tmp_path / "task.log")
    log.info("first")
    log.warn("second")
    log.detach(fh)
    assert log.console_gone
    assert [ln.split(" ", 2)[2] for ln in (tmp_path / "task.log").read_text().splitlines()] == [
        "INFO: first",
        "WARN: second",
    ]


def test_bar_on_a_terminal_shows_total_and_eta_and_log_lines_go_above_it() -> None:
    """Lines logged while a bar is shown are printed above it, never onto it; the bar shows
    the total and an ETA and is gone at the end (issue 20)."""
    master, slave = open_pty()
    stream = os.fdopen(slave, "w", encoding="utf-8")
    log = tasklog.TaskLog(stream)
    with tasklog.Progress("restoring", 40 << 20, stream=stream) as bar:
        for step in range(8):
            bar.update(4 << 20)
            time.sleep(0.15)  # long enough for the bar to be drawn in between
            log.info(f"line {step}")
        bar.update(16 << 20)  # past the estimate: the total follows
        time.sleep(0.15)
    log.info("after the bar")
    stream.close()
    raw = read_all(master)
    os.close(master)
    frames = plain(raw)
    assert re.search(r"restoring .*\d+(\.\d)?/40(\.0)? MiB", frames), frames
    assert "/?" not in frames
    assert re.search(r"\b0:00:0\d\b", frames)  # the time remaining
    assert "48.0/48.0 MiB" in frames
    shown = screen(raw)
    assert shown == [f"INFO: line {n}" for n in range(8)] + ["INFO: after the bar"], shown


def test_lines_on_another_descriptor_of_the_same_terminal_go_above_the_bar() -> None:
    """pct restore: its lines go to stdout, the bar to stderr, both the same terminal."""
    master, slave = open_pty()
    out = os.fdopen(os.dup(slave), "w", encoding="utf-8")
    err = os.fdopen(slave, "w", encoding="utf-8")
    other_r, other_w = os.pipe()
    with tasklog.Progress("restoring", 8 << 20, stream=err) as bar:
        for step in range(4):
            bar.update(2 << 20)
            time.sleep(0.15)
            tasklog.console_line(f"extracting {step}", out)
        assert not bar.shares_stream(os.fdopen(other_w, "w"))  # another file entirely
    out.close()
    err.close()
    os.close(other_r)
    raw = read_all(master)
    os.close(master)
    assert screen(raw) == [f"extracting {n}" for n in range(4)], raw


def test_a_log_file_that_cannot_be_written_ends_no_task(tmp_path: Path) -> None:
    """A full disk under a log file made every line raise: a backup failed on its own log. The
    file is now left after its first failed write, said once on the console and in the other
    log files, and the task goes on."""
    out = io.StringIO()
    log = tasklog.TaskLog(out)
    full = log.attach(Path("/dev/full"))  # a real device whose writes fail with ENOSPC
    other = log.attach(tmp_path / "task.log")
    log.info("one")
    log.info("two")
    log.detach(full)
    log.detach(other)
    warning = "WARN: unable to write log file '/dev/full' - No space left on device"
    assert out.getvalue().splitlines() == ["INFO: one", warning, "INFO: two"]
    lines = [ln.split(" ", 2)[2] for ln in (tmp_path / "task.log").read_text().splitlines()]
    assert lines == ["INFO: one", warning, "INFO: two"]
    assert log.warnings == 1 and log.files == [] and log.failed == []


def test_a_log_file_that_cannot_be_made_is_warned_about(tmp_path: Path) -> None:
    out = io.StringIO()
    log = tasklog.TaskLog(out)
    (tmp_path / "file").write_text("")
    assert log.attach_or_warn(tmp_path / "file/task.log") is None
    log.info("goes on")
    assert out.getvalue().splitlines() == [
        f"WARN: unable to create log file '{tmp_path}/file/task.log' - File exists",
        "INFO: goes on",
    ]
