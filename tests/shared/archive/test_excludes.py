"""vzdump's exclusion patterns for tar: Proxmox's command line where it drops what the pattern
names, anchored forms where Proxmox's would take the root's ``./`` and empty the archive."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.archive.excludes import normalized, takes_root, tar_groups
from tests.shared.archive.trees import write_files

FILES = [
    "bar", "bar2", "var/bar", "kk/yy/bar", "a.log", "var/log/b.log", "var/log/b.logs",
    "a/b/c", "a/c", "a/x/y/c", "x", "srv/x", "srv/deep/x", "x2", ".hidden", "srv/.dot",
    "srv/.cache/c", "q", "srv/q", "srv/qq", "dir/lit*", "dir/litx", "n/x", "n/a", "u v/w",
    "z.d/file.log/in", "etc/passwd",
]  # fmt: skip

# patterns Proxmox's command line handles as meant: ctkit's must drop exactly the same
ORDINARY = [
    "bar", "/bar", "*.log", "/var/log/*.log", "a/*/c", "/a/*/c", "x*", "*/x", "**/x", "*/*/x",
    "**/**/x", "./x", "./srv/x", "/srv/deep", "[a-c]/c", "dir/lit\\*", "u v", "*.logs",
    "z.d", "/n/[a-m]", "srv/*", "*x",
]  # fmt: skip

# patterns whose start takes the root's "./" in Proxmox's command line: what they drop now
ROOT_TAKING = {
    ".*": {".hidden", "srv/.dot", "srv/.cache/c"},
    # single-character names at any depth, and what is below them
    "?": {
        "x",
        "q",
        "srv/q",
        "srv/x",
        "srv/deep/x",
        "a/c",
        "a/b/c",
        "a/x/y/c",
        "n/x",
        "n/a",
        "u v/w",
        "srv/.cache/c",
    },
    "[!x]": {"q", "srv/q", "a/c", "a/b/c", "a/x/y/c", "n/x", "n/a", "u v/w", "srv/.cache/c"},
    ".[!.]*": {".hidden", "srv/.dot", "srv/.cache/c"},
    "*": set(FILES),
    ".": set(),
}


@pytest.mark.parametrize(
    ("pattern", "form"),
    [
        ("bar", "bar"), ("./x", "/x"), ("/x", "/x"), ("*/x", "x"), ("**/x", "x"),
        ("*/*/x", "*/x"), ("*/", "*/"), ("**/", "**/"),
    ],
)  # fmt: skip
def test_normalized(pattern: str, form: str) -> None:
    assert normalized(pattern) == form


@pytest.mark.parametrize(
    ("pattern", "takes"),
    [
        (".*", True), ("?", True), ("?*", True), ("[!x]", True), (".[!.]*", True),
        (".??*", True), (".", True), ("*", True), ("**", True), ("*.*", True), ("*?", True),
        ("\\.*", True), ("bar", False), ("*.log", False), ("x*", False), (".x", False),
        ("*x", False), ("\\*x", False), ("\\?", False),
    ],
)  # fmt: skip
def test_takes_root(pattern: str, takes: bool) -> None:
    assert takes_root(pattern) is takes


def test_groups_keep_proxmox_forms_and_anchor_the_rest() -> None:
    unanchored, anchored = tar_groups(["bar", "/var/foo*", "./x", ".*", "**/y", "/tmp/?*"])
    assert unanchored == ["bar", "y"]
    assert anchored == ["/var/foo*", "/x", "/.*", "/*/.*", "/tmp/?*"]


def _kept(tree: Path, argv: list[str]) -> set[str]:
    """The regular files a real tar run with these exclusion arguments archives."""
    out = subprocess.run(
        ["tar", "cf", "-", "--numeric-owner", *argv, "./"],
        cwd=tree, check=True, capture_output=True,
    ).stdout  # fmt: skip
    listed = subprocess.run(["tar", "tf", "-"], input=out, check=True, capture_output=True)
    names = listed.stdout.decode().splitlines()
    return {n.removeprefix("./") for n in names if not n.endswith("/")}


def _proxmox(pattern: str) -> list[str]:
    if pattern.startswith("/"):
        return ["--anchored", f"--exclude=.{pattern}"]
    return ["--no-anchored", f"--exclude={pattern}"]


def _ctkit(pattern: str) -> list[str]:
    unanchored, anchored = tar_groups([pattern])
    return [
        "--no-anchored",
        *(f"--exclude={p}" for p in unanchored),
        "--anchored",
        *(f"--exclude=.{p}" for p in anchored),
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("excl")
    write_files(tree, {name: b"x" for name in FILES})
    return tree


@pytest.mark.parametrize("pattern", ORDINARY)
def test_ordinary_patterns_drop_what_proxmox_drops(files: Path, pattern: str) -> None:
    kept = _kept(files, _ctkit(pattern))
    assert kept == _kept(files, _proxmox(pattern))
    assert kept != set(FILES), "the pattern drops nothing here: the case proves nothing"


@pytest.mark.parametrize("pattern", sorted(ROOT_TAKING))
def test_root_taking_patterns_drop_names_not_the_archive(files: Path, pattern: str) -> None:
    """Proxmox's command line empties the archive for each of these (checked here too, so
    the case keeps meaning something); ctkit's drops the names the pattern matches."""
    if pattern != ".":  # tar matches "." against nothing but the root itself
        assert _kept(files, _proxmox(pattern)) == set()
    assert _kept(files, _ctkit(pattern)) == set(FILES) - ROOT_TAKING[pattern]
