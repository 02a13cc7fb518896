"""Kernel pseudo file systems told by the fstatfs magic of an open file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.pseudofs import fs_magic, pseudo_fs_name


@pytest.mark.parametrize(
    ("path", "name"),
    [("/proc/version", "proc"), ("/sys/kernel/uevent_seqnum", "sysfs")],
)
def test_kernel_files_are_named(path: str, name: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        assert pseudo_fs_name(fd) == name
    finally:
        os.close(fd)


def test_a_data_file_is_not(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert fs_magic(fd) != 0
        assert pseudo_fs_name(fd) is None
    finally:
        os.close(fd)


def test_a_bad_descriptor_is_an_oserror() -> None:
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs_magic(-1)
