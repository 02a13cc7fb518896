"""shared.treescan: sizes, the first foreign directory, and what is never followed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.treescan import index_tree, scan_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "a/one").write_bytes(b"x" * 5000)
    (root / "a/b/two").write_bytes(b"y" * 70000)
    (root / "empty").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"z" * 1_000_000)
    (root / "link-to-file").symlink_to(outside / "big")
    (root / "link-to-dir").symlink_to(outside)
    return root


@pytest.fixture
def with_mount(tree: Path, mount_tmpfs: Callable[[Path, str], Path]) -> Path:
    """A tmpfs (another file system) at ``a/mnt`` with a file in it."""
    mnt = mount_tmpfs(tree / "a/mnt", "4m")
    (mnt / "inside").write_bytes(b"q" * 100_000)
    return mnt


def test_sizes_count_each_entry_and_follow_no_symlink(tree: Path) -> None:
    scan = scan_tree(tree)
    # a, a/b, a/one, a/b/two, empty, and the two symlinks (themselves, not what they name)
    assert scan.entries == 7
    assert scan.size == 75000
    expected = sum(
        os.lstat(os.path.join(d, n)).st_blocks * 512
        for d, dirs, files in os.walk(tree)
        for n in dirs + files
    )
    assert scan.allocated == expected
    assert scan.foreign is None


def test_the_first_foreign_directory_is_named_and_not_entered(tree: Path, with_mount: Path) -> None:
    scan = scan_tree(tree)
    assert scan.foreign == with_mount
    assert scan.entries == 8  # the mount point counts (tar and cp keep it, empty)
    assert scan.size == 75000  # its file does not


def test_the_walk_can_stop_at_the_first_foreign_directory(tree: Path, with_mount: Path) -> None:
    (tree / "zz").mkdir()
    for i in range(50):
        (tree / "zz" / f"f{i}").write_bytes(b"w")
    full = scan_tree(tree)
    stopped = scan_tree(tree, stop_at_foreign=True)
    assert stopped.foreign == full.foreign == with_mount
    assert stopped.entries < full.entries


def test_directories_only(tree: Path, with_mount: Path) -> None:
    scan = scan_tree(tree, sizes=False)
    assert scan.foreign == with_mount
    assert scan.size == 0
    assert scan.entries == 4  # a, a/b, a/mnt, empty


def test_a_root_that_is_a_symlink_is_not_followed(tree: Path) -> None:
    assert scan_tree(tree / "link-to-dir").entries == 0


def test_every_foreign_directory_is_named_up_to_the_bound(
    tree: Path, mount_tmpfs: Callable[[Path, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import treescan

    mounts = {mount_tmpfs(tree / name, "1m") for name in ("a/m1", "a/b/m2", "empty/m3")}
    scan = scan_tree(tree, sizes=False)
    assert set(scan.foreign_dirs) == mounts and scan.foreign_count == 3
    assert scan.foreign in mounts
    monkeypatch.setattr(treescan, "MAX_FOREIGN", 2)
    bounded = scan_tree(tree, sizes=False)
    assert len(bounded.foreign_dirs) == 2 and bounded.foreign_count == 3


def test_index_gives_each_directory_its_entries_and_subtree_sizes(tree: Path) -> None:
    os.link(tree / "a/one", tree / "a/b/one-again")
    index = index_tree(tree, max_entries=100)
    assert index is not None and index.foreign is None
    assert index.entries == 8
    top = {name: (is_dir, size) for name, is_dir, size in index.dirs[""]}
    assert set(top) == {"a", "empty", "link-to-file", "link-to-dir"}
    below_a = sum(size for _n, _d, size in index.dirs["a"])
    assert top["a"] == (True, os.lstat(tree / "a").st_blocks * 512 + below_a)
    assert {n for n, _d, _s in index.dirs["a/b"]} == {"two", "one-again"}
    assert index.allocated == sum(size for _n, _d, size in index.dirs[""])
    # the outside file the symlink names is not counted, nor entered
    assert index.allocated < 1_000_000
    assert [sorted(names) for names in index.linked.values()] == [["a/b/one-again", "a/one"]]


def test_index_stops_at_a_foreign_directory_and_past_its_bound(
    tree: Path, with_mount: Path
) -> None:
    index = index_tree(tree, max_entries=100)
    assert index is not None and index.foreign == with_mount
    assert index_tree(tree, max_entries=3) is None
