"""extract()'s ``keep`` hook and re-applying picked directory entries (apply_directory_entries):
the attributes of directories that exist before extraction, which --skip-old-files leaves."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.archive.codecs import Compression
from shared.archive.idmap import DEFAULT_UNPRIVILEGED, IdMapEntry, usernsexec_argv
from shared.archive.tarextract import (
    ExtractStats,
    apply_directory_entries,
    directory_entry,
    extract,
)
from shared.archive.tarformat import DIR, Member
from shared.archive.tarscan import ScanSink, TarScanner
from shared.errors import CommandError
from tests.shared.archive import rawtar
from tests.shared.archive.conftest import make_root
from tests.shared.archive.manifest import record

MAP = DEFAULT_UNPRIVILEGED
END = bytes(2 * rawtar.BLOCK)

# A directory with every attribute an entry carries, and something inside it.
_SCRIPT = r"""
set -e
cd "$0"
mkdir -p d/sub
echo inside > d/sub/file
chown 1000:100 d
setfacl -m u:1000:rwx,g:33:rx d
setfacl -d -m u:1000:rwx,g:100:rx d
chmod 2750 d
setfattr -n user.root -v yes d
touch -d '2019-02-03 04:05:06.75' d
"""


def _pax_member(name: bytes, records: list[tuple[bytes, bytes]], **kw: object) -> bytes:
    data = rawtar.pax_data(records)
    ext = rawtar.header(b"././@PaxHeader", type=b"x", size=len(data)) + rawtar.pad(data)
    return ext + rawtar.header(name, **kw)  # type: ignore[arg-type]


def _members(data: bytes) -> list[Member]:
    found: list[Member] = []

    class Sink(ScanSink):
        def member(self, member: Member) -> bool:
            found.append(member)
            return True

    scanner = TarScanner(Sink(), forward=False)
    scanner.feed(data + END)
    scanner.finish()
    return found


def _extract(data: bytes, dst: Path, **kw: object) -> ExtractStats:
    return extract(io.BytesIO(data + END), dst, compression=Compression.NONE, **kw)  # type: ignore[arg-type]


def _archive(src: Path, out: Path, idmap: Sequence[IdMapEntry] | None) -> None:
    """A vzdump-like posix archive of ``src`` (``./``, ``./d/``, ...), as vzdump's tar writes it."""
    argv = [*usernsexec_argv(idmap), "tar", "cpf", "-", "--numeric-owner", "--acls"]
    argv += ["--xattrs", "--xattrs-include=user.*", "-C", str(src), "./"]
    with open(out, "wb") as fh:  # written by us: the namespace's root may not write there
        subprocess.run(argv, stdout=fh, check=True)


# --- the hook -------------------------------------------------------------------------------


def test_keep_is_asked_about_approved_members_and_returns_the_picked_ones(wtmp: Path) -> None:
    data = (
        rawtar.directory(b"./")
        + _pax_member(b"./a/", [(b"SCHILY.xattr.user.k", b"v")], type=DIR, mode=0o700)
        + rawtar.member(b"./a/file", b"x")
        + rawtar.header(b"./null", type=b"3", devmajor=1, devminor=3)  # dropped: id-mapped
        + rawtar.directory(b"b")
    )
    asked: list[bytes] = []

    def keep(member: Member) -> bool:
        asked.append(member.name)
        return member.is_dir() and member.name != b"./"

    dst = make_root(wtmp / "dst", MAP)
    stats = _extract(data, dst, idmap=MAP, ignore_unpack_errors=True, keep=keep)
    assert asked == [b"./", b"./a/", b"./a/file", b"b"]  # not the dropped device node
    assert [m.name for m in stats.kept] == [b"./a/", b"b"]
    assert stats.kept[0].pax == {b"SCHILY.xattr.user.k": b"v"} and stats.kept[0].mode == 0o700
    assert (dst / "a/file").read_bytes() == b"x" and not (dst / "null").exists()


def test_without_keep_nothing_is_kept(wtmp: Path) -> None:
    stats = _extract(rawtar.directory(b"./") + rawtar.directory(b"./a/"), make_root(wtmp / "d"))
    assert isinstance(stats, ExtractStats) and stats.kept == []


# --- the entry --------------------------------------------------------------------------------


def test_entry_carries_attributes_under_our_name_only() -> None:
    records = [
        (b"path", b"./somewhere/else/"),
        (b"linkpath", b"/etc"),
        (b"GNU.dumpdir", b"Nfile\0"),
        (b"mtime", b"1500000000.25"),
        (b"uid", b"3000000"),
        (b"SCHILY.acl.access", b"user::rwx,group::r-x,other::---"),
        (b"SCHILY.xattr.user.k", b"v\nw"),
    ]
    # GNU magic with junk where GNU keeps atime/ctime and POSIX the name prefix
    raw = _pax_member(b"./a/", records, type=DIR, mode=0o2750, gnu=True, tail=b"evil/" * 20)
    (member,) = _members(raw)
    entry = directory_entry(member, (b"mnt", b"data"))
    (rebuilt,) = _members(entry)
    assert rebuilt.name == b"./mnt/data/" and rebuilt.type == DIR and rebuilt.size == 0
    assert set(rebuilt.names) == {b"./mnt/data/"}  # ustar name and pax path agree
    assert rebuilt.linkname == b"" and rebuilt.linknames == ()
    assert rebuilt.pax == {b"path": b"./mnt/data/", **dict(records[3:])}
    assert (rebuilt.mode, rebuilt.uid, rebuilt.mtime) == (0o2750, 3000000, 1500000000.25)
    listing = subprocess.run(["tar", "tvf", "-"], input=entry + END, capture_output=True)
    assert listing.returncode == 0 and listing.stdout.decode().split()[-1] == "./mnt/data/"
    assert _members(directory_entry(member, ()))[0].name == b"./"


def test_long_name_travels_in_pax_path() -> None:
    (member,) = _members(rawtar.directory(b"./a/"))
    parts = (b"x" * 90, b"y" * 90)
    (rebuilt,) = _members(directory_entry(member, parts))
    assert rebuilt.name == b"./" + b"/".join(parts) + b"/"


# --- re-applying ------------------------------------------------------------------------------


@pytest.mark.parametrize("mapped", [False, True], ids=["privileged", "unprivileged"])
def test_existing_directory_gets_the_entry_attributes(wtmp: Path, mapped: bool) -> None:
    idmap = MAP if mapped else None
    src = make_root(wtmp / "src", idmap)
    subprocess.run([*usernsexec_argv(idmap), "sh", "-c", _SCRIPT, str(src)], check=True)
    archive = wtmp / "a.tar"
    _archive(src, archive, idmap)
    dst = make_root(wtmp / "dst", idmap)
    (dst / "d").mkdir()  # a mount point: there before extraction
    if mapped:
        os.chown(dst / "d", 100000, 100000)

    def keep(member: Member) -> bool:
        return member.name == b"./d/"

    stats = extract(archive, dst, compression=Compression.NONE, idmap=idmap, keep=keep)
    expected = record(src)[b"d"]
    assert record(dst)[b"d"] != expected  # --skip-old-files left it alone
    assert [m.name for m in stats.kept] == [b"./d/"]
    apply_directory_entries(dst, [((b"d",), stats.kept[0])], idmap)
    assert record(dst) == record(src) | {b".": record(dst)[b"."]}
    assert expected["acl_default"] and expected["xattrs"] == {"user.root": b"yes"}
    assert expected["uid"] == (101000 if mapped else 1000)  # host view of container uid 1000


def test_entry_goes_where_we_say_not_where_the_archive_said(wtmp: Path) -> None:
    (member,) = _members(rawtar.header(b"./a/", type=DIR, mode=0o700, uid=4321))
    dst = make_root(wtmp / "dst")
    (dst / "a").mkdir()
    (dst / "b").mkdir()
    apply_directory_entries(dst, [((b"b",), member)], None)
    assert (dst / "a").stat().st_mode & 0o7777 == 0o755 and (dst / "a").stat().st_uid == 0
    assert (dst / "b").stat().st_mode & 0o7777 == 0o700 and (dst / "b").stat().st_uid == 4321


def test_symlink_in_place_is_replaced_not_followed(wtmp: Path) -> None:
    (member,) = _members(rawtar.header(b"./d/", type=DIR, mode=0o700, uid=4321))
    victim = wtmp / "victim"
    victim.mkdir(mode=0o755)
    dst = make_root(wtmp / "dst")
    (dst / "d").symlink_to(victim)
    apply_directory_entries(dst, [((b"d",), member)], None)
    assert victim.stat().st_mode & 0o7777 == 0o755 and victim.stat().st_uid == 0
    assert (dst / "d").is_dir() and not (dst / "d").is_symlink()


def test_nothing_to_apply_runs_nothing(wtmp: Path) -> None:
    apply_directory_entries(wtmp / "does-not-exist", [], None)


def test_tar_failure_is_a_command_error(wtmp: Path) -> None:
    (member,) = _members(rawtar.directory(b"./d/"))
    with pytest.raises(CommandError, match=r"failed: tar: .*missing"):
        apply_directory_entries(wtmp / "missing", [((b"d",), member)], None)
