"""Marker blocks, ignore files and safe writes (guest-setup.md A.2)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.guest.chroot import run_in_root
from shared.guest.files import MAX_READ, CtFiles, Delete, edit_block, remove_pve_sections
from tests.shared.guest.helpers import shift_ids

BLOCK = "# --- BEGIN PVE ---\n{}# --- END PVE ---\n"


def block(data: str) -> str:
    return BLOCK.format(data)


# --- edit_block ------------------------------------------------------------------------------


def test_new_file_only_with_data() -> None:
    assert edit_block(None, "a") == block("a\n")
    assert edit_block(None, "") is None


def test_block_replaced_in_place_and_trailing_blanks_dropped() -> None:
    old = "before\n#--- BEGIN PVE\nold\n# --- end pve ---\nafter\n\n\n"
    assert edit_block(old, "new\n") == "before\n" + block("new\n") + "after\n"


def test_first_block_only() -> None:
    old = block("one\n") + "mid\n" + block("two\n")
    assert edit_block(old, "x\n") == block("x\n") + "mid\n" + block("two\n")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("append", "user\n" + block("x\n")),
        ("prepend", block("x\n") + "user\n"),
        ("replace", block("x\n")),
    ],
)
def test_modes_without_block(mode: str, expected: str) -> None:
    assert edit_block("user\n\n", "x", mode=mode) == expected


def test_empty_file_gets_no_stray_blank_line() -> None:
    assert edit_block("", "x\n") == block("x\n")
    assert edit_block("", "x\n", mode="prepend") == block("x\n")


def test_empty_data() -> None:
    assert edit_block("user\n", "") is None  # no block: untouched
    assert edit_block(block("r\n"), "", delete=True) is Delete.FILE  # only our block: removed
    assert edit_block(block("r\n"), "") is None
    assert edit_block("user\n" + block("r\n"), "", delete=True) == "user\n" + block("")


def test_remove_pve_sections() -> None:
    text = "a\n  # --- BEGIN PVE ---\n127.0.0.1 x\n# --- END PVE --- trailing\nb\n"
    assert remove_pve_sections(text) == "a\n\nb\n"
    # from the first begin marker to the end of the line of the last end marker after it
    text = (
        "# --- END PVE ---\nx\n# --- BEGIN PVE ---\n1\n# --- END PVE ---\n2\n# --- END PVE ---!\nz"
    )
    assert remove_pve_sections(text) == "# --- END PVE ---\nx\n\nz"
    assert remove_pve_sections("# --- BEGIN PVE ---\nno end\n") == "# --- BEGIN PVE ---\nno end\n"


def test_remove_pve_sections_is_linear() -> None:
    """A container's /etc/hosts of many begin markers and no end (read at every start) took
    quadratic time: 20,000 lines, half a minute of host CPU."""
    text = "# --- BEGIN PVE ---\n" * 100_000
    started = time.monotonic()
    assert remove_pve_sections(text) == text
    assert time.monotonic() - started < 1.0


def test_a_file_too_large_for_a_config_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with open(tmp_path / "etc/hosts", "wb") as fh:
        fh.truncate(MAX_READ + 1)  # sparse: costs nothing on disk
    with pytest.raises(ConfigError, match=r"^'/etc/hosts' is larger than 16 MiB - not touched$"):
        in_root(tmp_path, lambda files: files.read("/etc/hosts"))


# --- CtFiles inside a chroot -------------------------------------------------------------------


def in_root(root: Path, func: object, uid: int = 0, gid: int = 0) -> object:
    return run_in_root(root, lambda: func(CtFiles(uid, gid)))  # type: ignore[operator]


def test_ignore_files_block_every_change(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("hosts", "gone", "link", "moved"):
        (root / "etc" / f".pve-ignore.{name}").write_text("")
    (root / "etc/hosts").write_text("mine\n")
    (root / "etc/gone").write_text("keep\n")
    (root / "etc/src").write_text("src\n")

    def work(files: CtFiles) -> list[bool]:
        files.write("/etc/hosts", "theirs\n")
        files.modify("/etc/hosts", "x")
        files.unlink("/etc/gone")
        files.rename("/etc/src", "/etc/moved")
        return [files.symlink("/etc/src", "/etc/link"), files.ignored("/etc/hosts")]

    assert in_root(root, work) == [False, True]
    assert (root / "etc/hosts").read_text() == "mine\n"
    assert (root / "etc/gone").exists()
    assert (root / "etc/src").exists() and not (root / "etc/moved").exists()
    assert not (root / "etc/link").is_symlink()


def test_write_replaces_symlink_and_keeps_owner_and_mode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/real").write_text("real\n")
    (root / "etc/link").symlink_to("real")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    shift_ids(root)
    os.chown(root / "etc/shadow", 100000, 100042)
    os.chmod(root / "etc/shadow", 0o640)

    def work(files: CtFiles) -> None:
        files.write("/etc/link", "new\n")
        files.write("/etc/shadow", "root:x:2::::::\n")
        files.write("/etc/new/deep/file", "x\n")

    in_root(root, work, 100000, 100000)
    assert (root / "etc/real").read_text() == "real\n"
    assert not (root / "etc/link").is_symlink() and (root / "etc/link").read_text() == "new\n"
    st = os.stat(root / "etc/shadow")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (100000, 100042, 0o640)
    for created in ("etc/link", "etc/new", "etc/new/deep", "etc/new/deep/file"):
        st = os.lstat(root / created)
        assert (st.st_uid, st.st_gid) == (100000, 100000), created
    assert not [p for p in (root / "etc").iterdir() if p.name.endswith(".tmp")]


def test_symlink_and_mkdir_are_chowned(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shift_ids(root)

    def work(files: CtFiles) -> list[bool]:
        return [files.symlink("/x", "/etc/l"), files.mkdir("/etc/d", 0o700), files.mkdir("/etc/d")]

    assert in_root(root, work, 100000, 100000) == [True, True, False]
    assert os.lstat(root / "etc/l").st_uid == 100000
    st = os.stat(root / "etc/d")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (100000, 0o700)


def test_read_ignores_fifos_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/dir").mkdir(parents=True)
    os.mkfifo(root / "etc/fifo")
    result = in_root(root, lambda f: [f.read("/etc/fifo"), f.read("/etc/dir"), f.read("/etc/none")])
    assert result == [None, None, None]


def test_an_unprivileged_root_reads_only_what_it_could_read_itself(tmp_path: Path) -> None:
    """Guest setup runs as the host's root: /etc/hosts made a symlink to a host-owned 0600 file
    (on a bind mount point) copied that file into the container."""
    (tmp_path / "etc").mkdir()
    secret = tmp_path / "etc/hosts"
    secret.write_text("HOST SECRET\n")
    os.chmod(secret, 0o600)  # owned by the host's root
    with pytest.raises(ConfigError, match="is not readable by the container's root"):
        in_root(tmp_path, lambda files: files.read("/etc/hosts"), uid=100000, gid=100000)
    assert in_root(tmp_path, lambda files: files.read("/etc/hosts")) == "HOST SECRET\n"
    os.chown(secret, 100033, 100033)  # a user of the container's own: its root reads it
    assert in_root(tmp_path, lambda files: files.read("/etc/hosts"), uid=100000) == "HOST SECRET\n"
    os.chown(secret, 0, 0)
    os.chmod(secret, 0o644)
    assert in_root(tmp_path, lambda files: files.read("/etc/hosts"), uid=100000) == "HOST SECRET\n"


def test_no_change_where_the_containers_root_could_make_none(tmp_path: Path) -> None:
    """Guest setup runs as the host's root: /etc/systemd made a symlink to a host directory
    bind-mounted into the container had it replace, create and remove files there, which the
    container's root may only read."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    share = root / "mnt/share"  # a host directory (the host's root's), mounted into the CT
    share.mkdir(parents=True)
    (share / "00-pve.preset").write_text("keep\n")
    (share / "gone").write_text("keep\n")
    shift_ids(root / "etc")
    os.chown(root, 100000, 100000)
    (root / "etc/systemd").symlink_to("/mnt/share")
    os.lchown(root / "etc/systemd", 100000, 100000)
    changes = [
        lambda f: f.write("/etc/systemd/00-pve.preset", "theirs\n"),
        lambda f: f.write("/etc/systemd/new/file", "x\n"),
        lambda f: f.unlink("/etc/systemd/gone"),
        lambda f: f.symlink("/x", "/etc/systemd/link"),
        lambda f: f.replace_symlink("/x", "/etc/systemd/link2"),
        lambda f: f.mkdir("/etc/systemd/dir"),
        lambda f: f.rename("/etc/systemd/gone", "/etc/moved"),
    ]
    for change in changes:
        with pytest.raises(ConfigError, match="'/etc/systemd' is not writable by the container"):
            in_root(root, change, 100000, 100000)
    assert sorted(p.name for p in share.iterdir()) == ["00-pve.preset", "gone"]
    assert (share / "00-pve.preset").read_text() == "keep\n"
    in_root(root, lambda f: f.write("/etc/systemd/00-pve.preset", "host\n"))  # privileged
    assert (share / "00-pve.preset").read_text() == "host\n"
