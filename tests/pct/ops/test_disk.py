"""The pure parts of pct/ops/disk.py: sizes, permissions, the df and cpusets tables, and the
symlink-refusing walk below a container root (no container needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pct.ops.disk import (
    DfRow,
    Owner,
    _copy,
    check_owner,
    create_file,
    human_size,
    new_size,
    parse_perms,
    render_cpusets,
    render_df,
    util_linux_size,
)
from shared.errors import CtkitError, ParamError

G = 1 << 30


def test_resize_sizes() -> None:
    assert new_size("5G", 4 * G) == 5 * G
    assert new_size("+1G", 4 * G) == 5 * G
    assert new_size("+512M", G) == G + (512 << 20)
    assert new_size("1.5G", 0) == G + G // 2
    assert new_size("4096", 0) == 4096  # no unit: bytes
    for bad in ("-1G", "1X", "1 G", "", "+"):
        with pytest.raises(ParamError):
            new_size(bad, 0)


def test_df_sizes() -> None:
    assert human_size(0) == "0"
    assert human_size(1023) == "1023"
    assert human_size(1024) == "1.0K"
    assert human_size(973.4 * 1024 * 1024) == "973.4M"
    assert human_size(5 * G) == "5.0G"
    assert human_size(3 << 40) == "3.0T"
    assert human_size(5000 << 40) == "5000.0T"


def test_df_table_alignment() -> None:
    rows = [
        DfRow("rootfs", "local:100/vm-100-disk-0.raw", "/", 4 * G, G, 3 * G),
        DfRow("mp0", "/srv/shared", "/data", 1000, 100, 900),
        DfRow("mp1", "local:100/subvol-100-disk-1.subvol", "/x", 0, 0, 0),
    ]
    assert render_df(rows) == (
        "MP     Volume                             Size Used Avail Use% Path\n"
        "rootfs local:100/vm-100-disk-0.raw        4.0G 1.0G  3.0G 25.0 /\n"
        "mp0    /srv/shared                        1000  100   900 10.0 /data\n"
        "mp1    local:100/subvol-100-disk-1.subvol    0    0     0  0.0 /x\n"
    )


def test_cpusets_table() -> None:
    assert render_cpusets({}) == "no running containers\n"
    text = render_cpusets({100: {0, 1}, 1012: {3}, 99999: set(range(12))})
    dashes = "-" * 33  # widest line (": " + 12 cpus) plus the widest id
    assert text == (
        f"{dashes}\n  100:  0 1\n 1012:        3\n99999:  0 1 2 3 4 5 6 7 8 9 10 11\n{dashes}\n"
    )


def test_permissions() -> None:
    assert parse_perms("640") == 0o640
    assert parse_perms("0640") == 0o640
    assert parse_perms("0x1a0") == 0o640
    assert parse_perms("0") == 0
    for bad in ("abc", "0x", "9"):
        with pytest.raises(CtkitError, match=r"^invalid mode: '0"):
            parse_perms(bad)
    assert parse_perms("7777") == 0o7777
    for big in ("10000", "0x1000", "77777777777777777777"):
        with pytest.raises(ParamError) as info:
            parse_perms(big)
        assert list(info.value.errors) == ["perms"]


def test_owner_ids_are_checked_before_anything_is_opened(tmp_path: Path) -> None:
    """An id past uid_t (or (uid_t)-1, chown's "unchanged") made fchown raise OverflowError
    after the file had been created."""
    check_owner(Owner("4294967294", "0", "7777"))
    for owner, param in (
        (Owner(user="99999999999"), "user"),
        (Owner(group="4294967295"), "group"),
        (Owner(perms="77777777777777777777"), "perms"),
    ):
        with pytest.raises(ParamError) as info:
            check_owner(owner)
        assert list(info.value.errors) == [param]
        with pytest.raises(ParamError):
            create_file(str(tmp_path / "never"), owner, names_from=None)
        assert not (tmp_path / "never").exists()
    # a container's passwd naming an id out of range names no usable id
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("big:x:4294967295:0::/:/bin/sh\n")
    with pytest.raises(CtkitError, match=r"^failed to get uid for: big$"):
        create_file(str(tmp_path / "never"), Owner(user="big"), names_from=etc)
    assert not (tmp_path / "never").exists()


def test_fstrim_sizes() -> None:
    assert util_linux_size(0) == "0 B"
    assert util_linux_size(1023) == "1023 B"
    assert util_linux_size(1024) == "1 KiB"
    assert util_linux_size(4182822912) == "3.9 GiB"
    assert util_linux_size(G) == "1 GiB"


def test_create_file_semantics(tmp_path: Path) -> None:
    """New content goes beside the destination and replaces it only on commit: the old file
    stays whole until then, and a discarded copy leaves it (and no temp file) behind."""
    path = tmp_path / "f"
    old_umask = os.umask(0o027)
    try:
        new = create_file(str(path), Owner(), names_from=None)
        assert not path.exists()
        new.commit()
        assert (path.stat().st_mode & 0o777) == 0o640
        path.write_text("old content")
        os.chmod(path, 0o600)
        new = create_file(str(path), Owner(user="0", group="0"), names_from=None)
        os.write(new.fd, b"new")
        assert path.read_text() == "old content"
        new.commit()
        assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o600
        new = create_file(str(path), Owner(), names_from=None)
        os.write(new.fd, b"cut sh")
        new.discard()
        assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["f"]
    finally:
        os.umask(old_umask)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nstaff:x:50:\n")
    create_file(str(tmp_path / "g"), Owner("app", "staff", "0x1ff"), names_from=etc).commit()
    st = (tmp_path / "g").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 50, 0o777)
    with pytest.raises(CtkitError, match=r"^failed to get gid for: wheel$"):
        create_file(str(tmp_path / "h"), Owner(group="wheel"), names_from=etc)
    # never a device or a FIFO (a FIFO without reader fails to open at all)
    with pytest.raises(CtkitError, match=r"^failed to create file: /dev/null: not a regular"):
        create_file("/dev/null", Owner(), names_from=None)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CtkitError, match=r"^failed to create file: .*/fifo: "):
        create_file(str(tmp_path / "fifo"), Owner(), names_from=None)


def test_names_are_looked_up_only_in_a_regular_file_and_only_so_far(tmp_path: Path) -> None:
    """pct push --user NAME reads the container's /etc/passwd on the host: a FIFO hung it, and
    /dev/zero (or a huge file) was read into its memory without end."""
    from pct.ops.disk import MAX_ID_FILE, _id_from_file

    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
    assert _id_from_file(passwd, "web") == 33
    assert _id_from_file(passwd, "nobody") is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _id_from_file(fifo, "root") is None  # returns at once, nothing opened for writing
    assert _id_from_file(Path("/dev/zero"), "root") is None
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        fh.truncate(MAX_ID_FILE)
        fh.seek(MAX_ID_FILE)
        fh.write(b"\nlate:x:7:7::/:/bin/sh\n")  # beyond what is read
    assert _id_from_file(big, "late") is None


def test_commit_never_reopens_the_temp_name(tmp_path: Path) -> None:
    """pct push commits inside the container, whose processes may replace the temp file by
    its name while the copy runs: a FIFO put there hung the host's pct push for ever when the
    commit opened the name again to fsync it."""
    import contextlib
    import threading

    path = tmp_path / "f"
    path.write_text("old")
    new = create_file(str(path), Owner(), names_from=None)
    os.write(new.fd, b"new")
    os.unlink(new.tmp)
    os.mkfifo(new.tmp)

    def commit() -> None:
        with contextlib.suppress(CtkitError):  # whatever the FIFO does, it must not block
            new.commit()

    worker = threading.Thread(target=commit, daemon=True)
    worker.start()
    worker.join(5)
    hung = worker.is_alive()
    if hung:  # let the blocked open return
        os.close(os.open(new.tmp, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert not hung, "commit blocked on a FIFO at the temp name"


def test_a_destination_with_a_long_name_is_replaced(tmp_path: Path) -> None:
    """The temp file's name adds some 20 bytes to the destination's: one of 236 to 255 bytes,
    a valid name, failed with 'File name too long'."""
    for name in ("a" * 255, "é" * 127):
        path = tmp_path / name
        path.write_text("old")
        new = create_file(str(path), Owner(), names_from=None)
        os.write(new.fd, b"new")
        new.commit()
        assert path.read_text() == "new" and os.listdir(tmp_path) == [name]
        path.unlink()
    # what a killed copy left under the shortened name is removed by the next copy
    path = tmp_path / ("b" * 250)
    new = create_file(str(path), Owner(), names_from=None)
    os.close(new.fd)
    os.rename(new.tmp, new.tmp.rsplit("-", 1)[0] + "-4194305")  # above the largest pid
    create_file(str(path), Owner(), names_from=None).commit()
    assert os.listdir(tmp_path) == [path.name]


# --- the copy behind push and pull -----------------------------------------------------


def copy(src: Path, dst: Path) -> None:
    """``src`` copied by push's and pull's copy into the new file ``dst``."""
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _copy(sfd, dfd)
    finally:
        os.close(sfd)
        os.close(dfd)


def test_a_sparse_file_is_copied_with_its_holes(tmp_path: Path) -> None:
    """A container's 3 GiB file of a few written bytes was written out in full by a pull: the
    container filled the host's disk with what cost it a few KiB."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    with open(src, "wb") as fh:
        fh.write(b"head")
        fh.seek(G)
        fh.write(b"middle")
        fh.truncate(3 * G)  # a hole at the end too
    copy(src, dst)
    st = os.stat(dst)
    assert st.st_size == 3 * G
    assert st.st_blocks * 512 < 1 << 20  # holes kept, not 3 GiB written
    with open(dst, "rb") as fh:
        assert fh.read(4) == b"head"
        fh.seek(G)
        assert fh.read(6) == b"middle"
        fh.seek(G + 6)
        assert fh.read(4096) == bytes(4096)


def test_a_file_without_holes_and_an_empty_one(tmp_path: Path) -> None:
    for data in (os.urandom(3 << 20) + b"tail", b""):
        src, dst = tmp_path / "src", tmp_path / "dst"
        src.write_bytes(data)
        dst.unlink(missing_ok=True)
        copy(src, dst)
        assert dst.read_bytes() == data
