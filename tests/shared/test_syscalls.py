"""The system calls made without a program: flags as mount(8) reads them, I/O priority."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import syscalls


def test_mount_options_split_into_flags_and_file_system_options() -> None:
    flags, rest = syscalls.mount_flags(["ro", "nosuid", "nodev", "noexec", "noatime", "discard"])
    assert (
        flags
        == (syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        | syscalls.MS_NOATIME
    )
    assert rest == ["discard"]
    assert syscalls.mount_flags(["rw", "lazytime", "acl"]) == (syscalls.MS_LAZYTIME, ["acl"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")
def test_the_flags_of_a_mount_are_read_back(tmp_path: Path) -> None:
    options = "nosuid,noexec,noatime,size=1m"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "t", str(tmp_path)], check=True)
    try:
        have = syscalls.current_flags(str(tmp_path))
        assert have == syscalls.MS_NOSUID | syscalls.MS_NOEXEC | syscalls.MS_NOATIME
        syscalls.mount(None, str(tmp_path), None, syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
        # a remount drops the flags it does not name (but the kernel keeps the atime mode):
        # what the bind mounts' remount must repeat
        assert syscalls.current_flags(str(tmp_path)) == syscalls.MS_RDONLY | syscalls.MS_NOATIME
    finally:
        subprocess.run(["umount", "-l", str(tmp_path)], check=False)


@pytest.mark.parametrize(
    ("level", "shown"), [(0, "best-effort: prio 0"), (7, "best-effort: prio 7"), (8, "idle")]
)
def test_io_priority_is_what_ionice_shows(level: int, shown: str) -> None:
    """Set in a child (the test process keeps its own); its children inherit it."""
    code = (
        "import subprocess, sys; from shared import syscalls; "
        f"syscalls.ioprio_set({level}); "
        "print(subprocess.run(['ionice'], capture_output=True, text=True).stdout.strip())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == shown


def test_a_failed_call_keeps_its_errno() -> None:
    with pytest.raises(OSError) as info:
        syscalls.umount("/nonexistent-ctkit-path")
    assert info.value.errno == 2 and info.value.filename == "/nonexistent-ctkit-path"
    with pytest.raises(FileNotFoundError):
        syscalls.rename_exchange("/nonexistent-ctkit-a", "/nonexistent-ctkit-b")
