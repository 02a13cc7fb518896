"""pct.ops.copysplit: how a large tree is split between cp processes (hard links kept in one),
and that the split copy equals one ``cp -a``'s: content, owners, modes, xattrs, ACLs, links,
holes, special files, and every directory's times (end to end in tests/pct/test_clone.py)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pct.ops import copysplit, volcopy
from pct.ops.copysplit import Split, copy_dir_metadata, plan
from shared.errors import CommandError, StorageError
from shared.treescan import TreeIndex, index_tree
from tests.pct.conftest import tree_signature

MIB = 1 << 20


def _index(dirs: dict[str, list[tuple[str, bool, int]]], **linked: list[str]) -> TreeIndex:
    """An index of made-up sizes: a directory's size is its subtree's."""
    index = TreeIndex(dirs=dirs, linked={i: names for i, names in enumerate(linked.values())})
    index.allocated = sum(size for _n, _d, size in dirs[""])
    return index


def test_big_directories_are_split_down_to_units() -> None:
    index = _index({
        "": [("bin", False, 1 * MIB), ("srv", True, 80 * MIB)],
        "srv": [("data", True, 80 * MIB)],
        "srv/data": [(f"f{i}", False, 10 * MIB) for i in range(8)],
    })  # fmt: skip
    split = plan(index, 2)
    assert split is not None
    assert split.dirs == ["", "srv", "srv/data"]
    assert len(split.workers) == 2
    assert sorted(u for w in split.workers for u in w) == sorted(
        ["bin", *(f"srv/data/f{i}" for i in range(8))]
    )
    loads = [sum(1 if u == "bin" else 10 for u in w) for w in split.workers]
    assert sorted(loads) == [40, 41]


def test_units_sharing_an_inode_go_to_one_worker_in_one_run() -> None:
    index = _index(
        {
            "": [("a", True, 40 * MIB), ("b", True, 40 * MIB)],
            "a": [("x", False, 20 * MIB), ("y", True, 20 * MIB)],
            "a/y": [("deep", False, 20 * MIB)],
            "b": [("z", False, 20 * MIB), ("w", False, 20 * MIB)],
        },
        pair=["a/y/deep", "b/w"],
    )
    split = plan(index, 2)
    assert split is not None
    (together,) = [w for w in split.workers if "b/w" in w]
    assert any(u == "a/y" or u == "a/y/deep" for u in together)


def test_what_does_not_split_is_left_to_one_cp() -> None:
    one = _index({"": [("huge", False, 500 * MIB)]})
    assert plan(one, 2) is None
    linked = _index({"": [("a", False, 5), ("b", False, 5)]}, pair=["a", "b"])
    assert plan(linked, 4) is None  # one group: nothing to share
    assert plan(_index({"": [("a", False, 5), ("b", False, 5)]}), 1) is None
    many = _index({"": [("x" * 200 + str(i), False, 1) for i in range(12_000)]})
    assert plan(many, 2) is None  # a worker's command line would be too long


def _decorate(root: Path) -> None:
    """What one cp -a keeps and a split copy must keep too, across units and split dirs."""
    data = root / "srv/data"
    (data / "deep/er").mkdir(parents=True)
    for i in range(6):
        (data / f"blob{i}").write_bytes(os.urandom(64 << 10))
    (data / "deep/er/file").write_bytes(b"deep\n")
    os.link(data / "blob0", root / "srv/blob0-link")  # a hard link across split dirs
    os.link(data / "deep/er/file", data / "file-link")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("ct\n")
    with open(data / "sparse", "wb") as fh:
        fh.seek(4 << 20)
        fh.write(b"end")
    os.chmod(data / "sparse", 0o4751)
    os.chown(data / "sparse", 101234, 101235)
    os.setxattr(data / "blob1", "user.note", b"kept")
    os.setxattr(data, "user.dir", b"on a split dir")
    subprocess.run(["setfacl", "-m", "u:100033:rwx", "-d", "-m", "g:100044:rx", str(data)],
                   check=True)  # fmt: skip
    subprocess.run(["setcap", "cap_net_raw+ep", str(data / "blob2")], check=True)
    os.mkfifo(data / "fifo")
    os.mknod(data / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (data / "dangling").symlink_to("/nowhere")
    (data / "-dash\nnewline\udcff").write_bytes(b"odd name")
    (root / "empty").mkdir(mode=0o1777)
    os.chmod(root / "empty", 0o1777)
    os.chown(root / "srv", 100000, 100001)
    os.chmod(root / "srv", 0o750)
    for i, path in enumerate([data / "deep", data, root / "srv", root / "empty", root]):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + i))


def _times(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode):
                out[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_nlink)
    return out


def _inode_groups(root: Path) -> list[list[str]]:
    by_inode: dict[int, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            by_inode.setdefault(os.lstat(path).st_ino, []).append(os.path.relpath(path, root))
    return sorted(sorted(names) for names in by_inode.values() if len(names) > 1)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    _decorate(src)
    return src


def _split(source: Path, workers: int) -> Split:
    index = index_tree(source, max_entries=1000)
    assert index is not None
    split = plan(index, workers)
    assert split is not None
    return split


def test_a_split_copy_equals_one_cp(tmp_path: Path, source: Path) -> None:
    split = _split(source, 3)
    assert "srv/data" in split.dirs and len(split.workers) == 3
    one, many = tmp_path / "one", tmp_path / "many"
    for dst in (one, many):
        dst.mkdir()
    # the target's parent hands a default ACL down to every directory made in it
    subprocess.run(["setfacl", "-d", "-m", "u:100077:rwx", str(many)], check=True)
    subprocess.run([*volcopy.CP, f"{source}/", f"{one}/"], check=True)
    copysplit.run(split, source, many)
    subprocess.run(["setfacl", "-k", str(many)], check=True)  # the root's own, set here
    copy_dir_metadata(source, many)
    assert tree_signature(many) == tree_signature(one) == tree_signature(source)
    assert _times(many) == _times(one) == _times(source)
    assert _inode_groups(many) == _inode_groups(source) != []
    sparse = many / "srv/data/sparse"
    assert sparse.stat().st_blocks * 512 < 1 << 20  # still a hole
    acl = subprocess.run(["getfacl", "-cp", str(many / "srv/data")], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "user:100033:rwx" in acl and "default:group:100044:r-x" in acl
    assert "100077" not in subprocess.run(["getfacl", "-cp", str(many / "srv")],
                                          capture_output=True, text=True).stdout  # fmt: skip


def test_copy_tree_splits_a_large_tree(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copysplit, "MIN_BYTES", 1)
    runs: list[Split] = []
    real = copysplit.run
    monkeypatch.setattr(copysplit, "run", lambda s, a, b: (runs.append(s), real(s, a, b)))
    dst = tmp_path / "dst"
    dst.mkdir()
    lines: list[str] = []
    volcopy.copy_tree(source, dst, log=lines.append, workers=2)
    assert len(runs) == 1 and len(runs[0].workers) == 2
    assert tree_signature(dst) == tree_signature(source)
    assert _times(dst) == _times(source)
    assert len(lines) == 1 and lines[0].startswith("copied "), lines
    # below the bound: one cp, as before
    monkeypatch.setattr(copysplit, "MIN_BYTES", 1 << 40)
    shutil.rmtree(dst)
    dst.mkdir()
    volcopy.copy_tree(source, dst, log=lines.append, workers=2)
    assert len(runs) == 1 and tree_signature(dst) == tree_signature(source)


def test_a_failing_worker_fails_the_copy(tmp_path: Path, source: Path) -> None:
    split = _split(source, 2)
    dst = tmp_path / "dst"
    (dst / "srv/data/blob3").mkdir(parents=True)  # where a file goes: cp cannot write it
    with pytest.raises(CommandError, match=r"^cp failed \(exit 1\): .*blob3"):
        copysplit.run(split, source, dst)


def test_a_foreign_directory_is_refused_before_anything_is_copied(
    tmp_path: Path, source: Path, mount_tmpfs: Callable[[Path, str], Path]
) -> None:
    mount_tmpfs(source / "srv/mnt", "1m")
    dst = tmp_path / "dst"
    dst.mkdir()
    with pytest.raises(StorageError, match="'srv/mnt' in the volume is another file system"):
        volcopy.copy_tree(source, dst, log=lambda _l: None, workers=2)
    assert list(dst.iterdir()) == []


def test_the_first_failure_ends_the_other_workers_at_once(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = _split(source, 2)
    pids = tmp_path / "pids"
    # the worker given blob0 would copy for a minute; the other fails at once
    script = (
        f'echo $$ >> {pids}; case "$*" in *srv/data/blob0*) exec sleep 60;; esac; '
        'echo "cp: cannot create regular file: No space left on device" >&2; exit 1'
    )
    monkeypatch.setattr(copysplit, "CP_UNITS", ["sh", "-c", script, "sh"])
    dst = tmp_path / "dst"
    dst.mkdir()
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"^cp failed \(exit 1\): .*No space left on device$"):
        copysplit.run(split, source, dst)
    assert time.monotonic() - started < 10
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # ended and reaped


def test_attributes_a_directory_cannot_take_fail_the_copy_in_one_line(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = _split(source, 2)

    def refused(_src: Path, _dst: Path) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(copysplit, "copy_dir_metadata", refused)
    dst = tmp_path / "dst"
    dst.mkdir()
    with pytest.raises(StorageError, match=r"^unable to copy the attributes of 'srv/data'"):
        copysplit.run(split, source, dst)
