"""The stop's note that tells the post-stop hook who holds the config lock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared.owner import process_start
from shared.runtime import stopper

VMID = 900000990


def test_the_note_names_this_process_for_the_block_only(ctroot: Path) -> None:
    with stopper.noted(VMID, stopper.SHUTDOWN):
        start = process_start(os.getpid())
        assert stopper.note_file(VMID).read_text() == f"{os.getpid()} {start} shutdown\n"
        assert stopper.current(VMID) == (os.getpid(), "shutdown")
    assert not stopper.note_file(VMID).exists()
    assert stopper.current(VMID) is None
    with pytest.raises(RuntimeError), stopper.noted(VMID, "stop"):
        raise RuntimeError("the stop failed")
    assert not stopper.note_file(VMID).exists()  # whatever ended the block


def test_a_note_counts_only_while_its_process_lives(ctroot: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = stopper.note_file(VMID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{gone.pid} 1 stop\n")  # a stopper that was killed
    assert stopper.current(VMID) is None


def test_a_note_whose_pid_another_process_has_now_counts_for_nothing(ctroot: Path) -> None:
    """A killed stopper's pid, given to another process: a pct stop --overrule-shutdown sent
    that process SIGTERM, and the post-stop hook left its pending changes to no one."""
    path = stopper.note_file(VMID)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = process_start(os.getpid())
    assert start is not None
    path.write_text(f"{os.getpid()} {start - 1} shutdown\n")
    assert stopper.current(VMID) is None
    path.write_text(f"{os.getpid()} {start} shutdown\n")
    assert stopper.current(VMID) == (os.getpid(), "shutdown")


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "1 2 stop extra", "1 stop", "-1 2 stop", "0 0 stop", "١٢ 1 stop", "1 " * 50],
)
def test_a_note_that_is_no_note_counts_for_nothing(ctroot: Path, text: str) -> None:
    path = stopper.note_file(VMID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert stopper.current(VMID) is None


def test_a_link_or_a_directory_at_the_notes_name_counts_for_nothing(
    ctroot: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(f"{os.getpid()} {process_start(os.getpid())} shutdown\n")
    path = stopper.note_file(VMID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(elsewhere)
    assert stopper.current(VMID) is None
    path.unlink()
    path.mkdir()
    assert stopper.current(VMID) is None
