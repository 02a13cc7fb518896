"""What below a volume is another file system, on a real btrfs (loop device): the same answer as
a walk of the tree, from the file system's references and the mount table alone."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from shared.storage import foreign
from shared.storage.foreign import foreign_dirs
from shared.treescan import MAX_FOREIGN, scan_tree


def _subvolume(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(path)], check=True)
    return path


def _mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True, capture_output=True)


def _walked(root: Path) -> list[Path]:
    return sorted(scan_tree(root, sizes=False).foreign_dirs)


def _no_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the tree was walked")

    monkeypatch.setattr(foreign, "scan_tree", walk)


@pytest.fixture
def volume(btrfs_mount: Path) -> Path:
    """A subvolume as a btrfs storage holds a container's, with plain files and directories."""
    vol = _subvolume(btrfs_mount / "images/100/subvol-100-disk-0.subvol")
    for rel in ("etc/hostname", "var/lib/dpkg/status", "home/a b/file"):
        (vol / rel).parent.mkdir(parents=True, exist_ok=True)
        (vol / rel).write_text("x")
    return vol


def test_nested_subvolumes_and_mounts_as_a_walk_finds_them(
    volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subvolumes at any depth (a name with a space), one at the top, a tmpfs and a bind
    mount of another file system are found; what lies inside one of them is not (a walk does
    not enter it); a bind mount of the volume's own file system is no other file system."""
    _subvolume(volume / "var/lib/machines")
    _subvolume(volume / "var/lib/machines/inner")  # inside a nested one: not counted
    _subvolume(volume / "home/a b/sub vol")
    _subvolume(volume / "top")
    (volume / "run").mkdir()
    _mount("-t", "tmpfs", "t", str(volume / "run"))
    (volume / "mnt/host").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    _mount("--bind", str(outside), str(volume / "mnt/host"))
    (volume / "mnt/same").mkdir()
    _mount("--bind", str(volume / "etc"), str(volume / "mnt/same"))
    (volume / "top/x").mkdir()
    _mount("-t", "tmpfs", "t", str(volume / "top/x"))  # inside a nested one: not counted
    walked = _walked(volume)
    _no_walk(monkeypatch)
    scan = foreign_dirs(volume)
    expected = ["home/a b/sub vol", "mnt/host", "run", "top", "var/lib/machines"]
    assert [str(p.relative_to(volume)) for p in scan.foreign_dirs] == expected
    assert scan.foreign_dirs == walked and scan.foreign_count == 5
    assert scan.foreign == volume / "home/a b/sub vol"


def test_a_volume_without_any(volume: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_walk(monkeypatch)
    scan = foreign_dirs(volume)
    assert (scan.foreign, scan.foreign_dirs, scan.foreign_count) == (None, [], 0)


def test_more_subvolumes_than_one_answer_holds(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel lists at most 255 references an ioctl, and says when more remain."""
    made = sorted(_subvolume(volume / f"d{n % 7}/s{n:03}") for n in range(300))
    assert scan_tree(volume, sizes=False).foreign_count == 300
    _no_walk(monkeypatch)
    scan = foreign_dirs(volume)
    assert scan.foreign_count == 300 and scan.foreign_dirs == made[:MAX_FOREIGN]


def test_a_subvolume_gone_meanwhile_is_walked_for(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subvolume deleted between the listing of the references and the lookup of its path
    (a guest removing one while it is backed up): the tree is walked, as before, instead of
    the backup failing."""
    _subvolume(volume / "var/lib/machines")
    real = foreign._lookup

    def gone(fd: int, tree: int, dirid: int) -> str:
        real(fd, tree, dirid)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(foreign, "_lookup", gone)
    assert foreign_dirs(volume).foreign_dirs == [volume / "var/lib/machines"]


def test_named_below_the_path_given(volume: Path, tmp_path: Path) -> None:
    """A storage path through a symbolic link: the directories are named below it."""
    _subvolume(volume / "srv/data")
    link = tmp_path / "link"
    link.symlink_to(volume)
    assert foreign_dirs(link).foreign_dirs == [link / "srv/data"]


def test_a_plain_directory_is_walked(volume: Path) -> None:
    """A directory that is no subvolume root (a dir storage on btrfs): its subvolume's
    references reach outside it, so it is walked, with the same answer."""
    _subvolume(volume / "var/lib/machines")
    _subvolume(volume / "home/kept")
    scan = foreign_dirs(volume / "var")
    assert scan.foreign_dirs == [volume / "var/lib/machines"] == _walked(volume / "var")


def test_another_file_system_is_walked(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    _mount("-t", "tmpfs", "t", str(tmp_path / "a/b"))
    assert foreign_dirs(tmp_path).foreign_dirs == [tmp_path / "a/b"] == _walked(tmp_path)
