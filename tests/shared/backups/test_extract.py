"""Extracting single files and directories from real backups: identical to the original for
every kind of member, nothing outside the target, early stop, hostile archives refused."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from shared.backups.extract import extract_paths, prepare_target
from shared.backups.locate import locate
from tests.vzdump.engine.conftest import BIN, vzdump

from .conftest import Made, made

__all__ = ["made"]

pytestmark = pytest.mark.lxc


def _attrs(path: Path) -> tuple[object, ...]:
    st = os.lstat(path)
    acl = subprocess.run(
        ["getfacl", "-cpn", str(path)], capture_output=True, text=True, check=False
    ).stdout
    xattr = subprocess.run(
        ["getfattr", "-h", "-d", "--absolute-names", str(path)],
        capture_output=True, text=True, check=False,
    ).stdout.split("\n", 1)[-1]  # fmt: skip
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, int(st.st_mtime), acl, xattr)


def test_every_kind_extracted_identical(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "out"
    res = vzdump("extract", made.volid, "/srv/kinds", "--target", str(target))
    assert res.rc == 0, res.err
    src, out = made.rootfs / "srv/kinds", target / "srv/kinds"
    names = sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in [*names, "sub/deep.txt"]:
        assert _attrs(out / name) == _attrs(src / name), name
        if (src / name).is_file() and not (src / name).is_symlink():
            assert (out / name).read_bytes() == (src / name).read_bytes()
    assert os.readlink(out / "link") == "regular.txt"
    assert os.stat(out / "hard").st_ino == os.stat(out / "regular.txt").st_ino
    sparse = os.stat(out / "sparse.img")
    assert sparse.st_blocks * 512 < sparse.st_size // 4  # still sparse
    assert "user.color" in _attrs(out / "attrs.txt")[6]  # type: ignore[operator]
    assert "user:1234:r--" in _attrs(out / "attrs.txt")[5]  # type: ignore[operator]
    assert not (target / "etc").exists()  # nothing else was extracted


def test_single_file_stops_reading_early(made: Made, tmp_path: Path) -> None:
    backup = locate(made.volid)
    out = extract_paths(backup, ["/srv/kinds/regular.txt"], prepare_target(tmp_path / "o"))
    assert out.stopped_early and out.members == ["/srv/kinds/regular.txt"]
    assert out.archive_bytes < made.archive.stat().st_size or made.archive.stat().st_size < 2 << 20
    assert (tmp_path / "o/srv/kinds/regular.txt").read_bytes().startswith(b"hello regular")


def test_existing_files_are_kept_and_missing_paths_named(made: Made, tmp_path: Path) -> None:
    target = tmp_path / "t"
    (target / "srv/kinds").mkdir(parents=True)
    (target / "srv/kinds/regular.txt").write_text("mine")
    res = vzdump("extract", made.volid, "/srv/kinds/regular.txt", "--target", str(target))
    assert res.rc == 0, res.err
    assert (target / "srv/kinds/regular.txt").read_text() == "mine"
    res = vzdump("extract", made.volid, "/no/such/file", "--target", str(tmp_path / "n"))
    assert res.rc == 3 and "not in backup" in res.err and "/no/such/file" in res.err
    assert not (tmp_path / "n").exists()  # nothing written anywhere


def test_hard_link_without_its_target_is_refused(made: Made, tmp_path: Path) -> None:
    res = vzdump("extract", made.volid, "/srv/kinds/hard", "--target", str(tmp_path / "h"))
    assert res.rc == 10 and "hard link" in res.err and len(res.lines) == 1, res.err


def _hostile_archive(dump: Path) -> str:
    """A vzdump-named archive with a config, a symlink to /tmp/… and a member through it."""
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    with tarfile.open(dump / name, "w", format=tarfile.GNU_FORMAT) as tar:
        conf = b"arch: amd64\nrootfs: local:100/vm-100-disk-0.raw,size=1G\n"
        info = tarfile.TarInfo("./etc/vzdump/pct.conf")
        info.size = len(conf)
        tar.addfile(info, io.BytesIO(conf))
        link = tarfile.TarInfo("./srv/escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(dump.parent / "victim")
        tar.addfile(link)
        evil = tarfile.TarInfo("./srv/escape/owned")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    return f"local:backup/{name}"


def test_hostile_archive_writes_nothing_outside(ctroot: Path, tmp_path: Path) -> None:
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    (dump.parent / "victim").mkdir()
    volid = _hostile_archive(dump)
    res = vzdump("extract", volid, "/srv", "--target", str(tmp_path / "x"))
    assert res.rc == 10 and "passes through symlink" in res.err, res.err
    assert list((dump.parent / "victim").iterdir()) == []
    res = vzdump("extract", volid, "/../etc", "--target", str(tmp_path / "y"))
    assert res.rc == 10 and "invalid path" in res.err


def test_symlinks_already_in_the_target_are_never_followed(made: Made, tmp_path: Path) -> None:
    """A symlink an earlier extraction (or anyone) left in an existing target: tar would write
    through it, so the extraction is refused before anything is written."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for where in ("srv", "srv/kinds", "srv/kinds/sub"):  # on the way, at, and below
        target = tmp_path / f"t-{where.count('/')}"
        (target / where).parent.mkdir(parents=True, exist_ok=True)
        (target / where).symlink_to(victim)
        res = vzdump("extract", made.volid, "/srv/kinds", "--target", str(target))
        assert res.rc == 9, res.err
        assert res.lines == [
            f"target '{target}' holds a symlink at '{where}' - extract into a new directory"
        ]
        assert list(victim.iterdir()) == []
    # elsewhere in the target a symlink is no concern
    target = tmp_path / "t-other"
    target.mkdir()
    (target / "elsewhere").symlink_to(victim)
    res = vzdump("extract", made.volid, "/srv/kinds/regular.txt", "--target", str(target))
    assert res.rc == 0, res.err
    assert (target / "srv/kinds/regular.txt").is_file()


def test_target_must_be_a_directory_not_a_symlink(made: Made, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "sym").symlink_to(tmp_path / "real")
    res = vzdump("extract", made.volid, "/srv/kinds", "--target", str(tmp_path / "sym"))
    assert res.rc == 9 and "not a directory" in res.err
    assert list((tmp_path / "real").iterdir()) == []


def test_truncated_archive_writes_nothing(made: Made, tmp_path: Path) -> None:
    os.truncate(made.archive, 4096)  # well before /srv
    res = vzdump("extract", made.volid, "/srv/kinds", "--target", str(tmp_path / "cut"))
    assert res.rc == 10 and "unexpected end of archive" in res.err and len(res.lines) == 1
    assert not (tmp_path / "cut").exists()


def test_sigterm_leaves_no_half_filled_target(ctroot: Path, tmp_path: Path) -> None:
    tree = ctroot / "tree"
    (tree / "etc/vzdump").mkdir(parents=True)
    (tree / "etc/vzdump/pct.conf").write_text("arch: amd64\nrootfs: local:1/x.raw,size=1G\n")
    (tree / "srv").mkdir()
    with open(tree / "srv/big", "wb") as fh:
        for _ in range(192):
            fh.write(os.urandom(1 << 20))
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-100-2020_01_01-00_00_00.tar"
    subprocess.run(["tar", "-cf", str(dump / name), "-C", str(tree),
                    "./etc/vzdump/pct.conf", "./srv"], check=True)  # fmt: skip
    target = tmp_path / "t"
    argv = [str(BIN / "vzdump"), "extract", f"local:backup/{name}", "/srv", "--target", str(target)]
    env = {**os.environ, "CTKIT_ROOT": str(ctroot)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".t.*/srv/big")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not target.exists() and not list(tmp_path.glob(".t.*"))


def test_directory_choice_reads_to_the_end(made: Made, tmp_path: Path) -> None:
    # a mount point's content may follow later in the stream: no early stop for a directory
    backup = locate(made.volid)
    out = extract_paths(backup, ["/srv/kinds/sub"], prepare_target(tmp_path / "d"))
    assert not out.stopped_early
    assert out.archive_bytes == made.archive.stat().st_size
    assert out.members == ["/srv/kinds/sub", "/srv/kinds/sub/deep.txt"]
    assert (tmp_path / "d/srv/kinds/sub/deep.txt").read_bytes() == b"deep\n"


def test_device_nodes_are_never_made_on_the_host(ctroot: Path, tmp_path: Path) -> None:
    """A backup of a privileged container may hold device nodes: getting files back made them
    on the host (a 0666 /dev/mem or disk node for whoever reaches the target)."""
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-900000021-2024_01_05-00_00_00.tar"
    with tarfile.open(dump / name, "w") as tar:
        for member, kind, major, minor in (
            ("./srv/mem", tarfile.CHRTYPE, 1, 1),
            ("./srv/disk", tarfile.BLKTYPE, 8, 0),
        ):
            info = tarfile.TarInfo(member)
            info.type, info.mode, info.devmajor, info.devminor = kind, 0o666, major, minor
            tar.addfile(info)
        plain = tarfile.TarInfo("./srv/plain.txt")
        plain.size = 2
        tar.addfile(plain, io.BytesIO(b"ok"))
    target = tmp_path / "out"
    res = vzdump("extract", f"local:backup/{name}", "/srv", "--target", str(target))
    assert res.rc == 0, res.err
    assert (target / "srv/plain.txt").read_bytes() == b"ok"
    assert sorted(p.name for p in (target / "srv").iterdir()) == ["plain.txt"]


def test_a_large_directory_is_counted_not_kept(ctroot: Path, tmp_path: Path) -> None:
    """Every extracted member's header was kept to the end: 300,000 files took 300 MB. Now a
    count, and the first MEMBERS_KEPT names for messages."""
    from shared.backups.extract import MEMBERS_KEPT

    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-900000022-2024_01_05-00_00_00.tar"
    with tarfile.open(dump / name, "w") as tar:
        for i in range(MEMBERS_KEPT + 500):
            tar.addfile(tarfile.TarInfo(f"./srv/many/f{i}"))
    out = extract_paths(
        locate(f"local:backup/{name}"), ["/srv/many"], prepare_target(tmp_path / "o")
    )
    assert out.count == MEMBERS_KEPT + 500 and len(out.members) == MEMBERS_KEPT
    assert out.members[0] == "/srv/many/f0"
    assert len(list((tmp_path / "o/srv/many").iterdir())) == MEMBERS_KEPT + 500


def test_setuid_bits_and_file_capabilities_are_not_made_on_the_host(
    ctroot: Path, tmp_path: Path
) -> None:
    """Getting files back made a backup's setuid-root shell, setgid program and file with
    capabilities on the host, for whoever reaches the target; other modes stay as they were,
    a sticky directory's too (it came out world-writable without its sticky bit), and the
    directories tar makes on the way, which the archive does not give, are 0755 (were 0777)."""
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-900000022-2024_01_05-00_00_00.tar"
    cap = b"\x01\x00\x00\x02\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    with tarfile.open(dump / name, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, mode, pax in (
            ("./usr/bin/rootsh", 0o4755, {}),
            ("./usr/bin/group", 0o2775, {}),
            ("./usr/bin/capsh", 0o755, {"SCHILY.xattr.security.capability": cap.decode("latin-1")}),
            ("./usr/bin/open", 0o777, {}),
            ("./usr/bin/tmp/", 0o1777, {}),
        ):
            info = tarfile.TarInfo(member)
            info.mode, info.size, info.pax_headers = mode, 2, pax
            if member.endswith("/"):
                info.type, info.size = tarfile.DIRTYPE, 0
            tar.addfile(info, io.BytesIO(b"ok"))
    target = tmp_path / "out"
    target.mkdir(mode=0o755)  # an existing one: nothing hides what tar makes in it
    res = vzdump("extract", f"local:backup/{name}", "/usr/bin", "--target", str(target))
    assert res.rc == 0, res.err
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (target / "usr/bin").iterdir()}
    assert modes == {"rootsh": 0o755, "group": 0o775, "capsh": 0o755, "open": 0o777, "tmp": 0o1777}
    assert os.listxattr(target / "usr/bin/capsh") == []
    for parent in (target / "usr", target / "usr/bin"):
        assert stat.S_IMODE(parent.stat().st_mode) == 0o755, parent


def test_many_paths_are_looked_up_not_scanned(ctroot: Path, tmp_path: Path) -> None:
    """Each member was compared with every chosen path: 200,000 members and 4,000 paths took
    70 s. Here 40,000 members and 8,000 paths: 320 million comparisons, about 30 s, before."""
    dump = ctroot / "var/lib/vz/dump"
    dump.mkdir(parents=True)
    name = "vzdump-lxc-900000023-2024_01_05-00_00_00.tar"
    with tarfile.open(dump / name, "w") as tar:
        for i in range(40_000):
            tar.addfile(tarfile.TarInfo(f"./srv/d{i % 50}/f{i}"))
    chosen = [f"/srv/d{i % 50}/f{i}" for i in range(0, 40_000, 5)] + ["/srv/d7"]
    started = time.monotonic()
    out = extract_paths(locate(f"local:backup/{name}"), chosen, prepare_target(tmp_path / "o"))
    assert time.monotonic() - started < 15
    assert out.count == 8_000 + 800  # and d7, whose files are none of those chosen by name
    assert len(list((tmp_path / "o/srv/d7").iterdir())) == 800
    assert (tmp_path / "o/srv/d0/f0").exists() and not (tmp_path / "o/srv/d0/f1").exists()


def test_a_failing_tar_says_why(made: Made, tmp_path: Path) -> None:
    """vzdump extract said only "command 'tar xpf - ...' failed: exit code 2", without tar's
    reason (pct restore prints it: its log shows tar's lines)."""
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], check=True)
    try:
        res = vzdump("extract", made.volid, "/srv/kinds/regular.txt", "--target", str(target))
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert res.rc == 11, res.err
    assert "failed: exit code 2 - tar: " in res.err and "Read-only file system" in res.err
    assert res.err.count("\n") == 1, res.err  # one line
