"""The standard streams of a command: output that cannot be written is one line (a full disk) or
no failure (a reader gone), never a traceback; a descriptor left closed is /dev/null, never the
first file the command opens."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCT = str(Path(sys.executable).parent / "pct")
VZDUMP = str(Path(sys.executable).parent / "vzdump")


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_output_to_a_full_disk_is_one_line(unbuffered: str) -> None:
    """Unbuffered, click's probe of the stream (``write("")``) reached the file first: its
    failure sent the help to /dev/null without a word, exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    for argv in ([PCT, "--help"], [VZDUMP, "--help"], [PCT, "create", "--help"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True,
                                  timeout=60, env=env)  # fmt: skip
        shown = " ".join(argv[1:])
        assert proc.returncode == 1, f"{shown}: {proc.stderr}"
        assert proc.stderr == "unable to write the output: No space left on device\n", shown


def test_a_reader_that_went_away_is_no_failure() -> None:
    """``pct ... | head -1`` with head gone before pct wrote: it exited 1 (or 0, by where the
    pipe broke), now as the command ends, without a word."""
    for argv in ([PCT, "--help"], [VZDUMP, "--help"], [PCT, "snapshot", "--help"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True,
                                  timeout=60)  # fmt: skip
        finally:
            os.close(write_end)
        assert (proc.returncode, proc.stderr) == (0, ""), " ".join(argv[1:])


def test_a_command_runs_with_its_standard_descriptors_closed() -> None:
    proc = subprocess.run(["sh", "-c", f"exec {PCT} --help <&- >&-"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")


# fd 1 closed at the start: the first file opened took its number, and a child had no stdout (a
# file of Python's is not inherited), so its own first file became its output
INHERITED = """
import os, subprocess, sys
from shared import stdio
if sys.argv[2] == "prepared":
    stdio.prepare()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
child = subprocess.run(["sh", "-c", "echo into-stdout"], stderr=subprocess.DEVNULL)
print("printed")
sys.stderr.write(f"{fd} {child.returncode} {os.readlink('/proc/self/fd/1')}")
"""


def test_a_closed_descriptor_never_becomes_a_file_the_command_opened(tmp_path: Path) -> None:
    script = tmp_path / "inherited.py"
    script.write_text(INHERITED)

    def run(how: str) -> list[str]:
        proc = subprocess.run(
            ["sh", "-c", 'exec "$0" "$1" "$2" "$3" >&-', sys.executable, script,
             tmp_path / "opened", how],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "opened").read_text() == ""
        return proc.stderr.split()

    fd, child, _stdout = run("as-is")  # what a command met without it: the child failed (EBADF)
    assert fd == "1" and child != "0"
    fd, child, stdout = run("prepared")
    assert (int(fd) > 2, child, stdout) == (True, "0", "/dev/null")


def test_the_quick_exit_still_follows_the_new_stdout() -> None:
    """The command's own stdout replaces Python's: its quick exit (no teardown of every module,
    20-50 ms) must still happen, with what was written flushed."""
    code = textwrap.dedent("""
        from shared import quickexit, stdio
        stdio.prepare()
        print("out")
        quickexit.leave(5)
        print("slow")
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, "out\n", "")


def test_a_failure_keeps_its_exit_code_when_its_message_cannot_be_written(ctroot: Path) -> None:
    """stderr full or its reader gone: the message is lost, the exit code is not (a missing
    container exited 1 instead of 3, a bad command 1 instead of 2)."""
    for argv, code in (([PCT, "status", "900000001"], 3), ([PCT, "bogus"], 2)):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            gone = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=write_end, timeout=60)
        finally:
            os.close(write_end)
        with open("/dev/full", "w") as full:
            failed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=full, timeout=60)
        assert (gone.returncode, failed.returncode) == (code, code), argv[1:]
