"""The vzdump archive format: config members written once and first, read back from any
source, and the data-tree filter that makes old suspend-mode archives (self-links) extractable."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from shared.archive.codecs import Compression
from shared.archive.members import list_members
from shared.archive.tarcreate import CreateSpec, create
from shared.archive.tarextract import extract
from shared.archive.tarformat import Member
from shared.archive.tarscan import ScanSink, TarScanner
from shared.archive.vzdumpformat import (
    MEMBERS,
    RECORD_LIMIT,
    DataTreeFilter,
    ReplayableStream,
    read_members,
    write_members,
)
from shared.errors import ArchiveError
from tests.shared.archive import rawtar
from tests.shared.archive.conftest import make_root
from tests.shared.archive.trees import write_files


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fd")


def _vzdump_archive(wtmp: Path, snap: Path) -> Path:
    cfg = wtmp / "tmpdir"
    write_members(cfg, b"hostname: first\n", b"[OPTIONS]\nenable: 1\n", (0, 0))
    out = wtmp / "a.tar.zst"
    create(CreateSpec(cfg, snap), out, compression=Compression.ZSTD)
    return out


def test_written_once_first_and_read_back_early(wtmp: Path) -> None:
    snap = wtmp / "snap"
    write_files(snap, {"etc/vzdump/pct.conf": b"hostname: the guest's own\n"})
    (snap / "blob").write_bytes(os.urandom(24 << 20))
    out = _vzdump_archive(wtmp, snap)
    names = [m.name.decode() for m in list_members(out)]
    assert names[:3] == [*MEMBERS, "./"]
    assert names.count(MEMBERS[1]) == 1
    assert names.count(MEMBERS[0]) == 2  # the second is the guest's own file: its data
    expected = (b"hostname: first\n", b"[OPTIONS]\nenable: 1\n")
    assert read_members(out) == expected
    counting = CountingReader(out.read_bytes())
    assert read_members(counting) == expected
    assert counting.consumed <= 2 << 20  # a 24 MiB archive, about one chunk read


def test_other_spellings_absence_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    data = rawtar.archive(
        rawtar.symlink(b"./etc/vzdump/pct.conf", b"/elsewhere"),  # not a regular file
        rawtar.member(b"etc//vzdump/pct.conf", b"arch: amd64\n"),
        rawtar.member(b"./etc/vzdump/pct.fw", b""),
        rawtar.directory(b"./"),
    )
    assert read_members(io.BytesIO(data)) == (b"arch: amd64\n", None)  # empty fw: none
    packed = zstandard.ZstdCompressor().compress(data)
    assert read_members(io.BytesIO(packed)) == (b"arch: amd64\n", None)
    assert read_members(io.BytesIO(rawtar.archive(rawtar.directory(b"./")))) == (None, None)
    with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
        read_members(io.BytesIO(data[:1024]))
    monkeypatch.setattr("shared.archive.vzdumpformat.MAX_CONFIG", 10)
    with pytest.raises(ArchiveError, match=r"too large"):
        read_members(io.BytesIO(data))


def test_replayable_stream_gives_every_byte_twice() -> None:
    raw = io.BytesIO(bytes(range(256)) * 1000)
    stream = ReplayableStream(raw, limit=5000)
    assert stream.read(3000) + stream.read(3000) == raw.getvalue()[:5000]
    assert stream.read(10) == b"" and stream.overflow
    stream.rewind()
    again = b"".join(iter(lambda: stream.read(777), b""))
    assert again == raw.getvalue()


def test_read_members_rewinds_a_replayable_stream(wtmp: Path) -> None:
    snap = wtmp / "snap"
    write_files(snap, {"file": b"data\n"})
    out = _vzdump_archive(wtmp, snap)
    with open(out, "rb") as fh:
        stream = ReplayableStream(fh)
        assert read_members(stream)[0] == b"hostname: first\n"
        whole = b"".join(iter(lambda: stream.read(1 << 16), b""))
    assert whole == out.read_bytes()
    # a config beyond the recording: read as none, every byte still replayed
    late = rawtar.archive(
        rawtar.member(b"./big", bytes(RECORD_LIMIT)), rawtar.member(b"./etc/vzdump/pct.conf")
    )
    stream = ReplayableStream(io.BytesIO(late))
    assert read_members(stream) == (None, None)
    assert b"".join(iter(lambda: stream.read(1 << 20), b"")) == late


def _members(data: bytes) -> list[Member]:
    found: list[Member] = []

    class Sink(ScanSink):
        def member(self, member: Member) -> bool:
            found.append(member)
            return False

    scanner = TarScanner(Sink(), forward=False)
    scanner.feed(data)
    return found


# What earlier suspend-mode archives looked like: the config members first, then the data tree
# (vzdump's temporary directory) holding them again as hard links to themselves.
SELF_LINKED = rawtar.archive(
    rawtar.member(b"./etc/vzdump/pct.conf", b"arch: amd64\n"),
    rawtar.member(b"./etc/vzdump/pct.fw", b""),
    rawtar.directory(b"./"),
    rawtar.directory(b"./etc/"),
    rawtar.member(b"./etc/hostname", b"ct\n"),
    rawtar.directory(b"./etc/vzdump/"),
    rawtar.hardlink(b"./etc/vzdump/pct.fw", b"./etc/vzdump/pct.fw"),
    rawtar.hardlink(b"./etc/vzdump/pct.conf", b"./etc/vzdump/pct.conf"),
    rawtar.member(b"./data", b"payload\n"),
)


def test_filter_skips_leading_members_and_self_links() -> None:
    logs: list[str] = []
    skip = DataTreeFilter(logs.append)
    kept = [m.name for m in _members(SELF_LINKED) if not skip(m)]
    assert kept == [b"./", b"./etc/", b"./etc/hostname", b"./etc/vzdump/", b"./data"]
    assert logs == [
        "skipping './etc/vzdump/pct.fw': a hard link to a config member",
        "skipping './etc/vzdump/pct.conf': a hard link to a config member",
    ]


def test_filter_keeps_the_guests_own_config_and_links_to_it() -> None:
    data = rawtar.archive(
        rawtar.member(b"./etc/vzdump/pct.conf", b"arch: amd64\n"),
        rawtar.directory(b"./"),
        rawtar.member(b"./etc/vzdump/pct.conf", b"the guest's\n"),
        rawtar.hardlink(b"./other", b"./etc/vzdump/pct.conf"),
    )
    skip = DataTreeFilter(lambda line: None)
    kept = [m.name for m in _members(data) if not skip(m)]
    assert kept == [b"./", b"./etc/vzdump/pct.conf", b"./other"]


def test_extract_of_a_self_linked_archive(wtmp: Path) -> None:
    """GNU tar cannot make those links ('Cannot hard link'); with the filter the tree comes out."""
    root = make_root(wtmp / "plain")
    with pytest.raises(Exception, match="exit code 2"):
        extract(io.BytesIO(SELF_LINKED), root, compression=Compression.NONE, skip=lambda m: (
            m.name.startswith(b"./etc/vzdump/pct") and m.type != b"1"
        ))  # fmt: skip
    root = make_root(wtmp / "filtered")
    logs: list[str] = []
    stats = extract(
        io.BytesIO(SELF_LINKED),
        root,
        compression=Compression.NONE,
        skip=DataTreeFilter(logs.append),
        log=logs.append,
    )
    assert (root / "data").read_bytes() == b"payload\n"
    assert (root / "etc/hostname").read_bytes() == b"ct\n"
    assert sorted(os.listdir(root / "etc/vzdump")) == []
    assert sum("hard link to a config member" in line for line in logs) == 2
    assert stats.bytes_in == len(SELF_LINKED)


def test_the_tar_that_made_them(wtmp: Path) -> None:
    """GNU tar itself writes self-links when a config member is met again in the data tree:
    that is why the config members live in a directory of their own."""
    tmpdir = wtmp / "same"
    write_members(tmpdir, b"arch: amd64\n", b"", (0, 0))
    argv = ["tar", "cf", "-", f"--directory={tmpdir}", *MEMBERS, f"--directory={tmpdir}", "."]
    data = subprocess.run(argv, capture_output=True, check=True).stdout
    links = [m.name for m in _members(data) if m.type == b"1" and m.name == m.linkname]
    assert sorted(links) == sorted(name.encode() for name in MEMBERS)


@pytest.mark.parametrize("planted", ["etc", "etc/vzdump", "etc-dir"])
def test_links_planted_in_the_temporary_directory_are_never_followed(
    wtmp: Path, planted: str
) -> None:
    """The directory belongs to the container's root; a process of that uid (another
    container's root on the same map, through a shared dump directory) planted links there,
    and the config was written over the host file a link named, which went to the uid."""
    tmpdir, host = wtmp / "tmpdir", wtmp / "host"
    (host / "vzdump").mkdir(parents=True)
    (host / "vzdump/pct.conf").write_text("a host file\n")
    os.chmod(host / "vzdump/pct.conf", 0o600)
    tmpdir.mkdir()
    if planted == "etc":
        (tmpdir / "etc").symlink_to(host)
    elif planted == "etc/vzdump":
        (tmpdir / "etc").mkdir()
        (tmpdir / "etc/vzdump").symlink_to(host / "vzdump")
    else:
        (tmpdir / "etc").mkdir()
    with pytest.raises(ArchiveError, match=r"'etc' is there already"):
        write_members(tmpdir, b"hostname: ct\n", b"", (100000, 100000))
    st = (host / "vzdump/pct.conf").stat()
    assert (host / "vzdump/pct.conf").read_text() == "a host file\n"
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert host.stat().st_uid == 0 and (host / "vzdump").stat().st_uid == 0


def test_members_are_the_containers_root(wtmp: Path) -> None:
    tmpdir = wtmp / "tmpdir"
    write_members(tmpdir, b"hostname: ct\n", b"[OPTIONS]\n", (100000, 100001))
    for name in ("etc", "etc/vzdump", "etc/vzdump/pct.conf", "etc/vzdump/pct.fw"):
        st = os.lstat(tmpdir / name)
        assert (st.st_uid, st.st_gid) == (100000, 100001), name
    assert (tmpdir / "etc/vzdump/pct.conf").read_bytes() == b"hostname: ct\n"
    assert (tmpdir / "etc/vzdump/pct.fw").read_bytes() == b"[OPTIONS]\n"
