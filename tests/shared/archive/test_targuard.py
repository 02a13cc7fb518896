"""The extraction guard's rules, member by member (no tar involved)."""

from __future__ import annotations

import pytest

from shared.archive.tarformat import Member
from shared.archive.targuard import ExtractGuard, split_name
from shared.errors import ArchiveError
from tests.shared.archive import rawtar


def _m(name: bytes, type: bytes = b"0", link: bytes = b"", names: tuple[bytes, ...] = ()) -> Member:
    header = rawtar.header(name[:100], type=type, devmajor=1, devminor=3)
    return Member(
        offset=0,
        type=type,
        name=name,
        names=names or (name,),
        linkname=link,
        linknames=(link,) if link else (),
        size=0,
        sparse=False,
        header=header,
    )


def test_split_name() -> None:
    assert split_name(b"./a//b/./c/") == (b"a", b"b", b"c")
    assert split_name(b"./") == ()
    assert split_name(b"/etc") is None
    assert split_name(b"a/../b") is None
    assert split_name(b"a/..b") == (b"a", b"..b")


def test_symlinks_may_point_anywhere_but_not_be_written_through() -> None:
    guard = ExtractGuard(allow_devices=True)
    assert guard.member(_m(b"./etc/mtab", b"2", b"/proc/self/mounts"))
    assert guard.member(_m(b"./lib", b"2", b"../../../../lib"))
    assert guard.member(_m(b"./etc/mtab", b"2", b"/proc/self/mounts"))  # same path again
    assert guard.member(_m(b"./library/x"))  # a prefix of a name is not a parent
    with pytest.raises(ArchiveError, match=r"^unsafe archive member '\./lib/x': path passes"):
        guard.member(_m(b"./lib/x"))
    with pytest.raises(ArchiveError, match=r"hard link target: path passes through symlink 'lib'"):
        guard.member(_m(b"./h", b"1", b"lib/libc.so"))
    assert guard.member(_m(b"./h", b"1", b"./lib"))  # a link to the symlink itself
    with pytest.raises(ArchiveError, match="directory over an earlier symlink"):
        guard.member(_m(b"./lib/", b"5"))


def test_hard_link_to_a_symlink_is_a_symlink() -> None:
    guard = ExtractGuard(allow_devices=True)
    assert guard.member(_m(b"./s", b"2", b"/tmp"))
    assert guard.member(_m(b"./h", b"1", b"./s"))  # link(2) does not follow: h is a symlink too
    assert guard.member(_m(b"./h2", b"1", b"h"))  # and so is a link to that link
    for name in (b"./h/x", b"./h2/x"):
        with pytest.raises(ArchiveError, match=r"path passes through symlink 'h2?'"):
            guard.member(_m(name))
    with pytest.raises(ArchiveError, match="directory over an earlier symlink"):
        guard.member(_m(b"./h/", b"5"))


def test_every_candidate_name_is_checked_and_remembered() -> None:
    guard = ExtractGuard(allow_devices=True)
    with pytest.raises(ArchiveError, match=r"absolute path '/x'"):
        guard.member(_m(b"./ok", names=(b"./ok", b"/x")))
    guard.member(_m(b"./a", b"2", b"/etc", names=(b"./a", b"./b")))
    with pytest.raises(ArchiveError, match=r"symlink 'b'"):
        guard.member(_m(b"./b/passwd"))


def test_root_and_links_to_root() -> None:
    guard = ExtractGuard(allow_devices=True)
    assert guard.member(_m(b"./", b"5"))
    with pytest.raises(ArchiveError, match=r"replace the target directory"):
        guard.member(_m(b".", b"0"))
    with pytest.raises(ArchiveError, match=r"hard link to the target directory"):
        guard.member(_m(b"./h", b"1", b"./"))


def test_devices() -> None:
    assert ExtractGuard(allow_devices=True).member(_m(b"./null", b"3"))
    strict = ExtractGuard(allow_devices=False)
    assert strict.member(_m(b"./dev/null", b"3")) is False  # excluded by tar anyway
    assert strict.member(_m(b"./fifo", b"6"))
    with pytest.raises(ArchiveError, match=r"device node not allowed"):
        strict.member(_m(b"./sda", b"4"))
    warnings: list[str] = []
    lenient = ExtractGuard(allow_devices=False, drop_devices=True, warn=warnings.append)
    assert lenient.member(_m(b"./sda", b"4")) is False
    assert warnings == ["skipping device node './sda' (not allowed in an unprivileged container)"]


def test_a_deep_path_after_a_symlink_is_checked_in_linear_time() -> None:
    """Every prefix of a member's path was built to look it up: a 639-byte archive (one
    symlink, then one member a million directories deep) kept a core busy for minutes."""
    import time

    guard = ExtractGuard(allow_devices=True)
    assert guard.member(_m(b"./s", b"2", b"/etc"))
    deep = b"./" + b"a/" * 200_000 + b"f"
    started = time.process_time()
    assert guard.member(_m(deep))
    assert time.process_time() - started < 1.0  # quadratic: minutes
    assert guard.member(_m(b"./" + b"a/" * 1000 + b"l", b"2", b"/tmp"))  # a deep symlink
    assert guard.member(_m(b"./" + b"a/" * 1000 + b"m/" + b"b/" * 200_000 + b"f"))  # beside it
    with pytest.raises(ArchiveError, match=r"path passes through symlink '(a/){1000}l'"):
        guard.member(_m(b"./" + b"a/" * 1000 + b"l/" + b"b/" * 200_000 + b"f"))
    assert time.process_time() - started < 2.0


def test_a_remembered_symlink_costs_a_hash_not_its_name() -> None:
    """Every symlink's name was kept for the whole extraction, beside its hash: a backup of a
    million symlinks took 260 MB in the guard alone."""
    import tracemalloc

    guard = ExtractGuard(allow_devices=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(50_000):
            guard.member(_m(b"./usr/share/doc/package-%06d/changelog.gz" % i, b"2", b"x"))
        per_link = (tracemalloc.get_traced_memory()[0] - before) / 50_000
    finally:
        tracemalloc.stop()
    assert per_link < 100, per_link  # a 44-byte name alone takes 77 as a bytes object
    with pytest.raises(ArchiveError, match="passes through symlink 'usr/share/doc/package-000007"):
        guard.member(_m(b"./usr/share/doc/package-000007/changelog.gz/x"))
