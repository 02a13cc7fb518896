"""The MMP mark of a killed e2fsck: read from a real image, kept while e2fsck runs, cleared
once it is gone (real mkfs.ext4 -O mmp, e2fsck, tune2fs and mount)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from shared.storage import ext4mmp, loop

MIB = 1 << 20


def mmp_image(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(16 * MIB)
    loop.make_ext4(path)
    return path


@contextlib.contextmanager
def e2fsck_holding_its_mark(image: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``e2fsck -f -y`` that has set its MMP mark (after ext4's MMP wait, ~11 s) and
    waits to print its first pass line into a full pipe (as the one of a parent that stopped
    reading): it holds the image and the mark until it is killed at the end of the block."""
    read_end, write_end = os.pipe()
    proc = None
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
        os.write(write_end, b"x" * fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ))
        proc = subprocess.Popen(
            ["e2fsck", "-f", "-y", str(image)], stdout=write_end, stderr=subprocess.DEVNULL
        )
        os.close(write_end)
        write_end = -1
        deadline = time.monotonic() + 60
        while not ext4mmp.fsck_mark(image):
            assert proc.poll() is None, "e2fsck ended before it set its mark"
            assert time.monotonic() < deadline, "e2fsck set no mark in 60 s"
            time.sleep(0.05)
        yield proc
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


def test_an_image_without_the_mark_is_left_alone(tmp_path: Path) -> None:
    image = mmp_image(tmp_path / "disk.raw")
    assert not ext4mmp.fsck_mark(image)
    assert not ext4mmp.clear_stale_fsck_mark(image)
    plain = tmp_path / "plain.raw"
    plain.write_bytes(b"\0" * (64 << 10))
    assert not ext4mmp.fsck_mark(plain)  # no ext4 at all
    assert not ext4mmp.fsck_mark(tmp_path / "missing.raw")
    no_mmp = tmp_path / "nommp.raw"
    with open(no_mmp, "wb") as fh:
        fh.truncate(8 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(no_mmp)], check=True)
    assert not ext4mmp.fsck_mark(no_mmp)


def test_the_mark_of_a_killed_e2fsck_is_cleared_and_a_running_ones_kept(
    tmp_path: Path,
) -> None:
    """While e2fsck runs its mark is its own: not cleared. Killed, it left the mark for good:
    mount refused the image until it was cleared, and now it mounts and checks clean."""
    image = mmp_image(tmp_path / "disk.raw")
    with e2fsck_holding_its_mark(image):
        assert ext4mmp.open_here(image)
        assert not ext4mmp.clear_stale_fsck_mark(image)
        assert ext4mmp.fsck_mark(image)
    assert ext4mmp.fsck_mark(image) and not ext4mmp.open_here(image)
    target = tmp_path / "mnt"
    target.mkdir()
    refused = subprocess.run(["mount", "-o", "loop", str(image), str(target)], capture_output=True)
    assert refused.returncode != 0
    assert ext4mmp.clear_stale_fsck_mark(image)
    assert not ext4mmp.fsck_mark(image)
    with loop.mounted(image, target, loop.RAW):
        assert (target / "lost+found").is_dir()
    check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
