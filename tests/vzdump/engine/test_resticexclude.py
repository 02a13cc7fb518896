"""vzdump's exclusion patterns for restic: anchored below the stage, and a size walk that
agrees with what a real restic backs up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vzdump.engine.resticexclude import (
    as_restic,
    effective,
    escape,
    exclude_args,
    pattern_regex,
    tree_size,
)

PATTERNS = [
    "/tmp/?*", "/var/tmp/?*", "/var/run/?*.pid",  # the std excludes
    "bar", "/var/foo*", "*.log", "a/**/c", "/deep/**", "[xy]z", "[^q]w", "\\*lit",
    "run", "config", "rootfs", "unclosed[", "q/r",
    # read as tar reads them: restic alone would drop neg/x, an/c and every top
    "/neg/[!x]", "/an/**/c", "./top", ".*",
]  # fmt: skip

# name -> whether it stays in the backup
TREE = {
    "tmp/a": False, "tmp/.hidden": False, "var/tmp/t": False, "var/run/x.pid": False,
    "var/run/keep": False, "bar/inside": False, "x/y/bar": False, "bar2": True,
    "var/foo": False, "var/foobar": False, "var/foo2/in": False, "var/fo": True,
    "srv/a.log": False, "srv/a.logs": True, "a/b/c": False, "a/b/d": True,
    "deep/x/y": False, "xz": False, "yz": False, "qz": True, "aw": False, "qw": True,
    "*lit": False, "xlit": True, "srv/run/x": False, "etc/config/x": False,
    "opt/rootfs": False, "opt/data": True, "unclosed[": False, "unclosed": True,
    "m/q/r": False, "q/r": False, "q/rr": True,
    "neg/x": True, "neg/a": False, "an/c": True, "an/b/c": False, "an/b/e/c": False,
    "top": False, "srv/top": True, "srv/.dot": False, "a/c": True,
}  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("bar", "bar", True), ("bar", "x/y/bar", True), ("bar", "bar2", False),
        ("/bar", "x/bar", False), ("/var/foo*", "var/foobar", True),
        ("/var/foo*", "var/foo/x", False),  # below a match: never visited, so never asked
        # an unanchored pattern's ** is restic's second (after the stage's **/): at least one
        ("a/**/c", "a/c", False), ("a/**/c", "a/1/2/c", True), ("a/**/c", "b/a/x/c", True),
        ("/a/**/c", "a/c", True),  # an anchored one's may be none (as_restic makes it */**)
        ("/a/**/c", "b/a/x/c", False), ("[a-c]x", "bx", True), ("[a-c]x", "dx", False),
        ("[^a]x", "bx", True), ("[^a]x", "ax", False), ("\\[x", "[x", True),
        ("?", "ab", False), ("*", "a/b", True), ("/*", "a/b", False),
    ],
)  # fmt: skip
def test_pattern_semantics(pattern: str, path: str, matched: bool) -> None:
    rx = pattern_regex(pattern)
    assert rx is not None
    assert (rx.fullmatch(path) is not None) == matched


@pytest.mark.parametrize("bad", ["x[", "[]", "[a-]", "[-a]", "a\\"])
def test_patterns_go_refuses_are_taken_literally(bad: str) -> None:
    """restic refuses a whole backup for one such pattern; tar's fnmatch reads it literally."""
    assert pattern_regex(bad) is None
    literal = pattern_regex(as_restic(bad))
    assert literal is not None and literal.fullmatch(f"x/{bad}")
    assert as_restic("/" + bad) == "/" + escape(bad)


def test_effective_patterns_follow_the_tar_path() -> None:
    assert effective(["/a", "b/", "c"], unprivileged=False) == ["/a", "c"]
    assert effective(["/a"], unprivileged=True) == ["lost+found", "/a"]
    assert effective(["./x", "*/y", "**/z"], unprivileged=False) == ["/x", "y", "z"]


@pytest.mark.parametrize(
    ("pattern", "form"),
    [
        ("[!x]", "[^x]"), ("/n/[!a-c]z", "/n/[^a-c]z"), ("[^x]", "[^x]"), ("\\[!x]", "\\[!x]"),
        ("[]!]", "\\[\\]!\\]"), ("/a/**/c", "/a/*/**/c"), ("a/**/c", "a/**/c"),
        ("/a/**", "/a/**"),
    ],
)  # fmt: skip
def test_patterns_are_read_as_tar_reads_them(pattern: str, form: str) -> None:
    """Go negates a class only with ^ and its ** may stand for no directory: restic would drop
    what tar keeps."""
    assert as_restic(pattern) == form


def test_arguments_are_anchored_below_the_stage() -> None:
    stage = Path("/r[1]/run/vzdump-restic/9/rootfs")
    assert escape(stage) == "/r\\[1\\]/run/vzdump-restic/9/rootfs"
    assert exclude_args(stage, ["/var/x", "run"]) == [
        "--exclude", "/r\\[1\\]/run/vzdump-restic/9/rootfs/var/x",
        "--exclude", "/r\\[1\\]/run/vzdump-restic/9/rootfs/**/run",
    ]  # fmt: skip


def _make_tree(top: Path) -> dict[str, int]:
    sizes = {}
    for index, rel in enumerate(sorted(TREE), 1):
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * index)
        sizes[rel] = index
    (top / "link").symlink_to("/usr")  # not followed
    return sizes


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_walk_and_restic_take_the_same_files(tmp_path: Path) -> None:
    """A real restic backup with these arguments, from a stage whose path holds glob
    characters and the names the patterns use (run, config, rootfs): restic keeps exactly the
    files the table keeps, and its processed bytes equal the walk's size."""
    stage = tmp_path / "st[1]" / "run" / "config"
    rootfs = stage / "rootfs"
    rootfs.mkdir(parents=True)
    sizes = _make_tree(rootfs)
    kept = sum(size for rel, size in sizes.items() if TREE[rel])
    patterns = effective(PATTERNS, unprivileged=False)
    assert tree_size(rootfs, patterns) == kept
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY":
           str(tmp_path / "repo"), "RESTIC_PASSWORD": "pw", "RESTIC_CACHE_DIR":
           str(tmp_path / "cache")}  # fmt: skip
    subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
    argv = ["restic", "backup", "--json", *exclude_args(rootfs, patterns), "rootfs"]
    out = subprocess.run(argv, env=env, cwd=stage, check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["total_bytes_processed"] == kept
    out = subprocess.run(["restic", "ls", "--json", "latest"], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    nodes = [json.loads(line) for line in out.stdout.splitlines()[1:]]
    files = {str(n["path"]).split("/rootfs/", 1)[1] for n in nodes if n["type"] == "file"}
    assert files == {rel for rel, keep in TREE.items() if keep}
