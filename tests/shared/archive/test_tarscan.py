"""The streaming header scanner, on GNU tar's own output and on hand-made headers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared.archive.tarformat import (
    MAX_NAME,
    MAX_PAX_RECORDS,
    Member,
    display_name,
    parse_pax,
)
from shared.archive.tarscan import ScanSink, TarScanner
from shared.errors import ArchiveError
from tests.shared.archive import rawtar


class Recorder(ScanSink):
    def __init__(self) -> None:
        self.members: list[Member] = []

    def member(self, member: Member) -> bool:
        self.members.append(member)
        return True


def _scan(data: bytes, step: int = 1 << 20) -> tuple[list[Member], bytes]:
    rec = Recorder()
    scanner = TarScanner(rec, forward=True)
    out = bytearray()
    for i in range(0, len(data), step):
        scanner.feed(data[i : i + step])
        out += b"".join(bytes(p) for p in scanner.take_output())
    scanner.finish()
    return rec.members, bytes(out)


def _gnu_tar(tmp_path: Path, fmt: str) -> bytes:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    long_dir = src / ("d" * 120)
    long_dir.mkdir(exist_ok=True)
    (long_dir / ("f" * 90)).write_bytes(b"long name")
    os.symlink("t" * 150, src / "longlink")
    with open(src / "holes", "wb") as fh:  # 8 data segments: needs GNU sparse extension blocks
        for i in range(8):
            fh.seek(i * (1 << 20))
            fh.write(os.urandom(4096))
        fh.truncate(9 << 20)
    with open(src / "tail", "wb") as fh:  # data to EOF: a partial region before the end entry
        fh.write(os.urandom(4096))
        fh.seek(8192)
        fh.write(os.urandom(904))
    (src / "plain").write_bytes(os.urandom(5000))
    os.link(src / "plain", src / "hard")
    fmt, _dash, version = fmt.partition("-")
    options = [f"--sparse-version={version}"] if version else []
    return subprocess.run(
        ["tar", "cf", "-", f"--format={fmt}", "--sparse", *options, "-C", str(src), "."],
        capture_output=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("fmt", ["posix", "gnu", "posix-0.0", "posix-0.1"])
def test_gnu_tar_output_passes_through_unchanged(tmp_path: Path, fmt: str) -> None:
    data = _gnu_tar(tmp_path, fmt)
    members, out = _scan(data)
    assert out == data
    by_name = {m.name: m for m in members}
    long_name = b"./" + b"d" * 120 + b"/" + b"f" * 90
    assert by_name[long_name].size == 9
    assert by_name[b"./longlink"].linkname == b"t" * 150
    assert by_name[b"./holes"].sparse and by_name[b"./tail"].sparse
    links = {(m.name, m.linkname) for m in members if m.type == b"1"}
    assert links in ({(b"./hard", b"./plain")}, {(b"./plain", b"./hard")})
    if fmt == "gnu":
        assert by_name[b"./holes"].type == b"S"


def test_chunking_does_not_matter(tmp_path: Path) -> None:
    data = _gnu_tar(tmp_path, "gnu")
    reference = _scan(data)
    for step in (1, 511, 513, 10240):
        assert _scan(data, step) == reference


def test_base256_size_and_display() -> None:
    size_field = b"\x80" + (600).to_bytes(11, "big")
    data = rawtar.archive(rawtar.header(b"./big", size_field=size_field) + rawtar.pad(bytes(600)))
    members, _ = _scan(data)
    assert members[0].size == 600
    assert display_name(b"a\nb\xff\\") == "a\\nb\\377\\\\"


def test_pax_overrides() -> None:
    data = rawtar.archive(
        rawtar.pax([(b"path", b"./real name"), (b"uid", b"100000"), (b"mtime", b"12.5")]),
        rawtar.member(b"./short", b"abc", uid=5),
    )
    members, _ = _scan(data)
    m = members[0]
    assert (m.name, m.uid, m.mtime) == (b"./real name", 100000, 12.5)
    assert set(m.names) == {b"./short", b"./real name"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (rawtar.header(b"./a")[:148] + b"0000000\0" + rawtar.header(b"./a")[156:], "checksum"),
        (rawtar.header(b"./v", type=b"V"), "unsupported member type 'V'"),
        (rawtar.header(b"./d", type=b"D", size=0), "unsupported member type 'D'"),
        (rawtar.header(b"./s", type=b"2", size=10, linkname=b"x") + bytes(512), "stray data"),
        (rawtar.header(b"./dir/", size=3) + bytes(512), "stray data"),
        (rawtar.header(b"./p", type=b"x", size=9) + rawtar.pad(b"junk data"), "malformed pax"),
        (rawtar.pax([(b"path", b"a")]) + rawtar.pax([(b"path", b"b")]), "repeated extended"),
        (rawtar.pax([(b"size", b"-1")]) + rawtar.header(b"./f"), "invalid pax 'size'"),
        (rawtar.pax([(b"comment", b"x")]), "has no member"),
        (rawtar.header(b"./f", size_field=b"\xff" * 12), "invalid size field"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        _scan(rawtar.archive(data))


@pytest.mark.parametrize(
    "records",
    [[(b"path", b"./a\0b")], [(b"GNU.sparse.name", b"./a\0")], [(b"linkpath", b"x\0/etc")]],
    ids=["path", "sparse name", "linkpath"],
)
def test_a_name_with_a_nul_byte_is_refused(records: list[tuple[bytes, bytes]]) -> None:
    """tar would cut the name at the NUL: the guard would have approved another name."""
    data = rawtar.archive(rawtar.pax(records), rawtar.symlink(b"./l", b"t"))
    with pytest.raises(ArchiveError, match="member name with a NUL byte at offset 1024"):
        _scan(data)


def test_names_from_the_header_alone() -> None:
    """A member named by its header only (most members; other pax records aside), with a
    POSIX prefix: the same names as when a pax record or a GNU long name names it too."""
    prefixed = rawtar.header(b"name", prefix=b"./dir", type=b"2", linkname=b"../t")
    data = rawtar.archive(
        rawtar.pax([(b"mtime", b"12.5")]),
        prefixed,
        rawtar.gnu_long(b"./dir/name"),
        prefixed,
        rawtar.member(b"./plain"),
    )
    first, second, plain = _scan(data)[0]
    assert (first.name, first.names) == (b"./dir/name", (b"name", b"./dir/name"))
    assert (first.linkname, first.linknames) == (b"../t", (b"../t",))
    assert (second.name, second.names, second.linknames) == (first.name, first.names, (b"../t",))
    expected = (b"./plain", (b"./plain",), b"", ())
    assert (plain.name, plain.names, plain.linkname, plain.linknames) == expected


def test_everything_after_the_end_is_ignored() -> None:
    body = rawtar.member(b"./a", b"1")
    data = body + bytes(512) + rawtar.member(b"./evil", b"2") + bytes(1024)
    members, out = _scan(data)
    assert [m.name for m in members] == [b"./a"]
    assert out == body + bytes(10240 - len(body))


def test_truncated_inside_member() -> None:
    data = rawtar.member(b"./a", b"x" * 2000)
    with pytest.raises(ArchiveError, match=r"^unexpected end of archive$"):
        _scan(data[:1000])


def test_parse_pax_records() -> None:
    raw = rawtar.pax_data([(b"path", b"x=y"), (b"SCHILY.xattr.user.a", b"\0\1")])
    assert parse_pax(raw, 0) == [(b"path", b"x=y"), (b"SCHILY.xattr.user.a", b"\0\1")]
    assert parse_pax(raw + bytes(20), 0)[0] == (b"path", b"x=y")
    with pytest.raises(ArchiveError):
        parse_pax(b"99 path=x\n", 0)


def test_names_longer_than_any_path_are_refused() -> None:
    """As pax records or GNU long names they may be 8 MiB; split into components they took
    hundreds of MB in the guard and in browse (and tar could not create them anyway)."""
    at_limit = b"./" + b"d/" * ((MAX_NAME - 3) // 2) + b"f"
    assert len(at_limit) <= MAX_NAME
    members, _out = _scan(rawtar.archive(rawtar.pax([(b"path", at_limit)]), rawtar.member(b"x")))
    assert [m.name for m in members] == [at_limit]
    long = b"ab/" * 2_700_000  # just under the 8 MiB of an extended header
    for parts in (
        [rawtar.pax([(b"path", long)]), rawtar.member(b"x")],
        [rawtar.gnu_long(long), rawtar.member(b"x")],
        [rawtar.gnu_long(long, b"K"), rawtar.symlink(b"s", b"t")],
        [rawtar.pax([(b"linkpath", b"t" * (MAX_NAME + 1))]), rawtar.hardlink(b"h", b"t")],
    ):
        with pytest.raises(ArchiveError, match=f"member name longer than {MAX_NAME} bytes"):
            _scan(rawtar.archive(*parts))


def test_a_pax_header_of_too_many_records_is_refused() -> None:
    """760,000 tiny records in one 8 MiB header took 175 MB as a list and then a dict."""
    records = [(f"k{i}".encode(), b"v") for i in range(MAX_PAX_RECORDS)]
    assert len(parse_pax(rawtar.pax_data(records), 0)) == MAX_PAX_RECORDS
    with pytest.raises(ArchiveError, match="at offset 512 has too many records"):
        parse_pax(rawtar.pax_data([*records, (b"one", b"more")]), 512)


def test_display_escapes_what_a_terminal_would_act_on() -> None:
    """C1 controls (U+009B starts a terminal's control sequence as ESC [ does) and the marks
    that reverse or hide text were printed as they were."""
    name = "é-\u009b31m-\u202egnp.exe-\u200b".encode()
    assert display_name(name) == "é-\\302\\23331m-\\342\\200\\256gnp.exe-\\342\\200\\213"
    assert display_name("日本 語.txt".encode()) == "日本 語.txt"


# --- sparse maps that do not add up: GNU tar would read a different amount of data -----------


def _old_sparse(name: bytes, size: int, regions: list[tuple[int, int]], real: int) -> bytes:
    entries = b"".join(rawtar._octal(o, 12) + rawtar._octal(n, 12) for o, n in regions)
    tail = bytes(386 - 345) + entries.ljust(96, b"\0") + b"\0" + rawtar._octal(real, 12)
    header = rawtar.header(name, type=b"S", size=size, gnu=True, tail=tail)
    return header + rawtar.pad(bytes(size))


def _hidden_device_archive(regions: list[tuple[int, int]], size: int) -> bytes:
    """A sparse member followed by one whose data hides a device node's header: GNU tar,
    reading 512 bytes more than stored, would take that header for a member."""
    hidden = rawtar.header(b"./srv/mem", type=b"3", mode=0o666, devmajor=1, devminor=3)
    return (
        _old_sparse(b"./srv/sp", size, regions, 4096)
        + rawtar.member(b"./srv/x", hidden + bytes(512))
        + bytes(1024)
    )


@pytest.mark.parametrize(
    ("regions", "size"),
    [
        ([(0, 512)], 0),  # the map claims a block the member does not store
        ([(0, 100), (512, 100)], 200),  # a region short of a block before the last
        ([(0, 512)], 1024),  # the map claims less than stored
    ],
)
def test_old_sparse_map_must_match_the_stored_size(
    regions: list[tuple[int, int]], size: int
) -> None:
    with pytest.raises(ArchiveError, match=r"sparse map of member '\./srv/sp' does not match"):
        _scan(_hidden_device_archive(regions, size))


def test_an_old_sparse_map_without_end_is_refused_while_it_is_short() -> None:
    """Extension blocks of 21 one-byte regions each, the map never ending: every block grew
    the list of regions, 687 MB for a 214 KB archive before any check."""
    from shared.archive.tarsparse import MAX_OLD_REGIONS

    entries = b"".join(rawtar._octal(2 * i, 12) + rawtar._octal(1, 12) for i in range(4))
    tail = bytes(386 - 345) + entries + b"\1" + rawtar._octal(1 << 30, 12)
    head = rawtar.header(b"./srv/sp", type=b"S", size=0, gnu=True, tail=tail)
    ext = b"".join(rawtar._octal(i, 12) + rawtar._octal(1, 12) for i in range(21))
    block = (ext + b"\1").ljust(512, b"\0")
    blocks = MAX_OLD_REGIONS // 21 + 2
    with pytest.raises(ArchiveError, match=r"sparse map of member '\./srv/sp' is too long"):
        _scan(head + block * blocks + bytes(1024), step=512)


def test_old_sparse_map_that_adds_up_passes() -> None:
    members, _out = _scan(_old_sparse(b"./sp", 612, [(0, 512), (1024, 100)], 1124) + bytes(1024))
    assert [(m.name, m.size, m.sparse) for m in members] == [(b"./sp", 612, True)]


@pytest.mark.parametrize("version", ["0.1", "1.0"])
def test_pax_sparse_map_must_match_the_stored_size(version: str) -> None:
    if version == "0.1":
        records = [(b"GNU.sparse.map", b"0,1024"), (b"GNU.sparse.realsize", b"4096")]
        data = bytes(512)
    else:
        records = [(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"),
                   (b"GNU.sparse.realsize", b"4096"), (b"GNU.sparse.name", b"./sp")]  # fmt: skip
        data = rawtar.pad(b"1\n0\n1024\n") + bytes(512)  # map block + one block, not two
    pax = rawtar.pax_data(records)
    archive = (
        rawtar.header(b"./PaxHeaders/sp", type=b"x", size=len(pax))
        + rawtar.pad(pax)
        + rawtar.member(b"./GNUSparseFile.0/sp", data)
        + bytes(1024)
    )
    with pytest.raises(ArchiveError, match="does not match its stored size"):
        _scan(archive)


def test_global_headers_cannot_pile_up() -> None:
    """Each global pax header may be large; together, before one member, they are bounded."""
    pax = rawtar.pax_data([(b"comment", b"A" * (3 << 20))])
    one = rawtar.header(b"././@PaxHeader", type=b"g", size=len(pax)) + rawtar.pad(pax)
    members, _out = _scan(one * 2 + rawtar.member(b"./f", b"x") + bytes(1024))
    assert [m.name for m in members] == [b"./f"]
    with pytest.raises(ArchiveError, match=r"extended headers before offset \d+ are too large"):
        _scan(one * 3 + rawtar.member(b"./f", b"x") + bytes(1024))


def test_a_pax_1_0_sparse_member_without_room_for_its_map_is_refused() -> None:
    """Stored size 0: GNU tar reads the map from the next block, which the scan took for a
    header; the blocks it called that member's data held a header tar then extracted (a
    setuid file no check had seen)."""
    records = [(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"),
               (b"GNU.sparse.realsize", b"512"), (b"GNU.sparse.name", b"./bin/sp")]  # fmt: skip
    pax = rawtar.pax_data(records)
    hidden = rawtar.member(b"./bin/HIDDEN", b"unseen\n", mode=0o4755)
    archive = (
        rawtar.header(b"./PaxHeaders/sp", type=b"x", size=len(pax))
        + rawtar.pad(pax)
        + rawtar.header(b"./GNUSparseFile.0/sp", size=0)
        + rawtar.header(b"1\n0\n512\n", size=512 + len(hidden))  # tar's map, the scan's header
        + bytes(512)
        + hidden
        + bytes(1024)
    )
    with pytest.raises(ArchiveError, match=r"sparse map of member '\./bin/sp' does not match"):
        _scan(archive)
