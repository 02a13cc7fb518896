"""The host root's mount propagation, which container monitors rely on."""

from __future__ import annotations

from pathlib import Path

from shared.runtime.propagation import ensure_shared_root, root_is_shared

PRIVATE = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
SHARED = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
OTHER = "30 27 0:5 / /dev rw shared:2 - devtmpfs udev rw\n"


def test_reads_the_root_line(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(OTHER + PRIVATE)
    assert not root_is_shared(str(info))
    info.write_text(OTHER + SHARED)
    assert root_is_shared(str(info))


def test_root_is_shared_after_ensure() -> None:
    ensure_shared_root()
    assert root_is_shared()
    assert ensure_shared_root() is False  # nothing left to do
